"""Text classification served: texts in; the most likely label, with optional top k and probabilities, out."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from shoal.families.base import Predictor
from shoal.tasks.codec import Codec, Parsed, Text


class PredictRequest(BaseModel):
    """One or many texts to classify with the model's production version."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Text] = Field(
        min_length=1, description="texts to classify; more than the model's max_inputs answers 413"
    )
    top_k: int | None = Field(None, ge=1, strict=True, description="also return the k most likely labels")
    return_probabilities: bool = Field(False, strict=True, description="also return every label's probability")


class LabelScore(BaseModel):
    label: str
    probability: float


class Prediction(BaseModel):
    """The most likely label of one input, with the optional extras the request asked for."""

    label: str
    probability: float
    top_k: list[LabelScore] | None = Field(None, description="present when the request set top_k")
    probabilities: dict[str, float] | None = Field(None, description="present when return_probabilities")
    tier: str | None = Field(
        None,
        description="for a model with a cascade, who answered: small, fallback, small-capped (the fallback's cap was "
        "reached) or small-fallback-down (the fallback did not answer); llm for a model the LLM answers at its cold "
        "start (its llm: key, before a small version is promoted)",
    )
    fallback_model: str | None = Field(None, description="the fallback that answered (tier fallback)")
    fallback_version: int | str | None = Field(None, description="its version (tier fallback)")


class TextClassificationCodec(Codec):
    request = PredictRequest
    answer = Prediction
    inputs_doc = "texts to classify"
    answer_doc = "a label"
    _keys = frozenset(PredictRequest.model_fields)

    def fast_options(self, data: dict[str, Any]) -> dict[str, Any] | None:
        top_k = data.get("top_k")
        probabilities = data.get("return_probabilities", False)
        if (
            data.keys() <= self._keys
            and (top_k is None or (type(top_k) is int and top_k >= 1))
            and type(probabilities) is bool
        ):
            return {"top_k": top_k, "probabilities": probabilities}
        return None

    def validate(self, data: Any) -> Parsed:
        request = PredictRequest.model_validate(data)
        return Parsed(request.inputs, {"top_k": request.top_k, "probabilities": request.return_probabilities})

    def answers(self, outputs: np.ndarray, predictor: Predictor, parsed: Parsed) -> list[Any]:
        options = parsed.options
        return predictions(outputs, predictor.labels, options["top_k"], options["probabilities"])

    def logged(self, inputs: list[Any], answers: list[Any]) -> tuple[list[str], list[str] | None]:
        return inputs, [a["label"] for a in answers]

    def drift_view(self, inputs: list[str], answers: list[str]) -> tuple[Any, list[Any]] | None:
        return inputs, answers


def predictions(proba: np.ndarray, labels: list[str], top_k: int | None, probabilities: bool) -> list[dict[str, Any]]:
    if len(proba) == 1:  # most requests: numpy's argmax lets go of the GIL, and the event loop waits to get it back
        row = proba[0].tolist()
        top = max(row)
        answers = [{"label": labels[row.index(top)], "probability": top}]
    else:
        rows = proba.argmax(axis=1)
        scores = proba[np.arange(len(rows)), rows].tolist()
        answers = [{"label": labels[i], "probability": p} for i, p in zip(rows.tolist(), scores, strict=True)]
    if top_k:
        k = min(top_k, len(labels))
        order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
        ranked = np.take_along_axis(proba, order, axis=1)
        for answer, indices, values in zip(answers, order.tolist(), ranked.tolist(), strict=True):
            answer["top_k"] = [{"label": labels[i], "probability": v} for i, v in zip(indices, values, strict=True)]
    if probabilities:
        for answer, row in zip(answers, proba.tolist(), strict=True):
            answer["probabilities"] = dict(zip(labels, row, strict=True))
    return answers
