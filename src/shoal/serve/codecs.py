"""How each task's predict requests are read and its answers written: one codec per task kind.

A codec turns a request body into the inputs the batcher queues (or a 422 naming the problem), and the
batched output rows into the JSON answers and the prediction log's entries. The text codec keeps a fast path
that accepts exactly what `PredictRequest` accepts; anything else goes through the pydantic model itself so
the 422 message names the problem.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from shoal.families.base import Predictor
from shoal.families.forecast import LEVEL, ForecastPredictor
from shoal.families.tabular import INTERVAL_LEVEL
from shoal.serve.errors import ServeError, validation_message
from shoal.serve.schemas import (
    EmbedRequest,
    EmbedResponse,
    ForecastRequest,
    ForecastResponse,
    PredictRequest,
    PredictResponse,
    RegressionPredictRequest,
    RegressionPredictResponse,
)


@dataclass
class Parsed:
    inputs: list[Any]
    options: dict[str, Any] = field(default_factory=dict)


def _json(body: bytes, example: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ServeError(422, "invalid_request", f"the body is not valid JSON; send {example}") from None


def _validated(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ServeError(422, "invalid_request", validation_message(list(error.errors()))) from None


def _inputs(body: bytes, example: str, request: type[BaseModel], accept: Callable[[Any], bool]) -> Parsed:
    """`{"inputs": [...]}` whose every item passes `accept` (the fast path), else `request`'s own validation, so a
    422 names the problem."""
    data = _json(body, example)
    items = data.get("inputs") if type(data) is dict and data.keys() == {"inputs"} else None
    if type(items) is list and items and all(accept(item) for item in items):
        return Parsed(items)
    return Parsed(_validated(request, data).inputs)


def _text(item: Any) -> bool:
    return type(item) is str and bool(item)


class Codec:
    request: ClassVar[type[BaseModel]]
    response: ClassVar[type[BaseModel]]
    #: the route that serves this task, and the key of the answers in its response body
    endpoint: ClassVar[str] = "predict"
    result_key: ClassVar[str] = "predictions"

    def parse(self, body: bytes) -> Parsed:
        raise NotImplementedError

    def answers(self, outputs: np.ndarray, predictor: Predictor, parsed: Parsed) -> list[Any]:
        raise NotImplementedError

    def logged(self, inputs: list[Any], answers: list[Any]) -> tuple[list[str], list[str] | None]:
        """(input texts, predicted labels) for the prediction log."""
        raise NotImplementedError


class TextClassificationCodec(Codec):
    request = PredictRequest
    response = PredictResponse
    _keys = frozenset(PredictRequest.model_fields)

    def parse(self, body: bytes) -> Parsed:
        data = _json(body, '{"inputs": ["a text", ...]}')
        if type(data) is dict and data.keys() <= self._keys:
            inputs = data.get("inputs")
            top_k = data.get("top_k")
            probabilities = data.get("return_probabilities", False)
            if (
                type(inputs) is list
                and inputs
                and (top_k is None or (type(top_k) is int and top_k >= 1))
                and type(probabilities) is bool
                and all(type(text) is str and text for text in inputs)
            ):
                return Parsed(inputs, {"top_k": top_k, "probabilities": probabilities})
        request = _validated(PredictRequest, data)
        return Parsed(request.inputs, {"top_k": request.top_k, "probabilities": request.return_probabilities})

    def answers(self, outputs: np.ndarray, predictor: Predictor, parsed: Parsed) -> list[dict[str, Any]]:
        options = parsed.options
        return predictions(outputs, predictor.labels, options["top_k"], options["probabilities"])

    def logged(self, inputs: list[Any], answers: list[Any]) -> tuple[list[str], list[str] | None]:
        return inputs, [a["label"] for a in answers]


def predictions(proba: np.ndarray, labels: list[str], top_k: int | None, probabilities: bool) -> list[dict[str, Any]]:
    best = proba.argmax(axis=1)
    scores = proba[np.arange(len(best)), best].tolist()
    answers = [{"label": labels[i], "probability": p} for i, p in zip(best.tolist(), scores, strict=True)]
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


class RegressionCodec(Codec):
    """Rows of feature values in; `value` and the interval out. Each row's features are checked against the
    serving version's schema by the predictor (`check_inputs`), so a bad row is a 422, never a 500."""

    request = RegressionPredictRequest
    response = RegressionPredictResponse

    def parse(self, body: bytes) -> Parsed:
        example = '{"inputs": [{"feature": value, ...}, ...]}'
        return _inputs(body, example, RegressionPredictRequest, lambda row: type(row) is dict)

    def answers(self, outputs: np.ndarray, predictor: Predictor, parsed: Parsed) -> list[dict[str, Any]]:
        answers = []
        for value, lower, upper in outputs.tolist():
            answer: dict[str, Any] = {"value": value}
            if math.isfinite(lower) and math.isfinite(upper):
                answer.update(lower=lower, upper=upper, level=INTERVAL_LEVEL)
            answers.append(answer)
        return answers

    def logged(self, inputs: list[Any], answers: list[Any]) -> tuple[list[str], list[str] | None]:
        return [orjson.dumps(row).decode() for row in inputs], [format(a["value"], ".6g") for a in answers]


class ForecastingCodec(Codec):
    """Series ids in; for each, the next `horizon` timestamps with the forecast and its 90% interval."""

    request = ForecastRequest
    response = ForecastResponse

    def parse(self, body: bytes) -> Parsed:
        return _inputs(body, '{"inputs": ["a series id", ...]}', ForecastRequest, _text)

    def answers(self, outputs: np.ndarray, predictor: Predictor, parsed: Parsed) -> list[dict[str, Any]]:
        assert isinstance(predictor, ForecastPredictor)
        h = predictor.horizon
        answers = []
        for series, row in zip(parsed.inputs, outputs.tolist(), strict=True):
            points = [
                {"timestamp": t, "value": v, "lower": lo, "upper": hi}
                for t, v, lo, hi in zip(
                    predictor.timestamps(series), row[:h], row[h : 2 * h], row[2 * h :], strict=True
                )
            ]
            answers.append({"series": series, "level": LEVEL / 100, "forecast": points})
        return answers

    def logged(self, inputs: list[Any], answers: list[Any]) -> tuple[list[str], list[str] | None]:
        return inputs, [format(a["forecast"][0]["value"], ".6g") for a in answers]


class EmbeddingCodec(Codec):
    """Texts in; one embedding per text out, at `/embed`."""

    request = EmbedRequest
    response = EmbedResponse
    endpoint = "embed"
    result_key = "embeddings"

    def parse(self, body: bytes) -> Parsed:
        return _inputs(body, '{"inputs": ["a text", ...]}', EmbedRequest, _text)

    def answers(self, outputs: np.ndarray, predictor: Predictor, parsed: Parsed) -> list[Any]:
        return outputs.tolist()  # type: ignore[no-any-return]

    def logged(self, inputs: list[Any], answers: list[Any]) -> tuple[list[str], list[str] | None]:
        return inputs, None


CODECS: dict[str, Codec] = {
    "text-classification": TextClassificationCodec(),
    "regression": RegressionCodec(),
    "forecasting": ForecastingCodec(),
    "embedding": EmbeddingCodec(),
}


def codec_for(task: str) -> Codec:
    try:
        return CODECS[task]
    except KeyError:
        raise ServeError(422, "invalid_request", f"task {task!r} has no predict endpoint") from None
