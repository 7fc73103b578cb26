"""Embeddings served: texts in; one unit-length vector per text out, at `/embed`."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from shoal.families.base import Predictor
from shoal.tasks.codec import Codec, Parsed, Text


class EmbedRequest(BaseModel):
    """Texts to embed with an embedding model's production version."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Text] = Field(min_length=1, description="texts; more than the model's max_inputs answers 413")


class EmbeddingCodec(Codec):
    request = EmbedRequest
    answer = list[float]
    endpoint = "embed"
    result_key = "embeddings"
    inputs_doc = "texts to embed"
    answer_doc = "a unit-length vector"

    def answers(self, outputs: np.ndarray, predictor: Predictor, parsed: Parsed) -> list[Any]:
        return outputs.tolist()  # type: ignore[no-any-return]

    def logged(self, inputs: list[Any], answers: list[Any]) -> tuple[list[str], list[str] | None]:
        return inputs, None
