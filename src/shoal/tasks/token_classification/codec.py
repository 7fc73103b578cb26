"""Token classification served: texts in; each text's entities, with character offsets, type and score, out.

The server tokenizes each text with the tokenizer training used (`shoal.families.runtime.tokens`: URLs, @mentions,
#hashtags, clitics, numbers, words with inner hyphens, punctuation runs), so an entity starts and ends on a token
boundary; `start` and `end` are Python string indices (Unicode code points, end exclusive): `text[start:end]` is
the entity's `text`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from shoal.families.base import Predictor
from shoal.tasks.codec import Codec, Parsed, Text


class EntityRequest(BaseModel):
    """Texts to find named entities in, with the model's production version."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Text] = Field(
        min_length=1, description="texts (a sentence or a short document each); more than max_inputs answers 413"
    )


class Entity(BaseModel):
    """One entity found in a text."""

    start: int = Field(description="offset of its first character (a Unicode code point index)")
    end: int = Field(description="offset just past its last character")
    label: str = Field(description="its entity type, one of the model's declared types")
    text: str = Field(description="the text's characters start..end")
    score: float = Field(description="the mean marginal probability of its tokens' tags (0..1)")


class Entities(BaseModel):
    """The entities found in one text, in order."""

    entities: list[Entity]


class TokenClassificationCodec(Codec):
    request = EntityRequest
    answer = Entities
    inputs_doc = "texts to find named entities in"
    answer_doc = "the entities found in the text, in order, with character offsets (code points), type and score"

    def answers(self, outputs: np.ndarray, predictor: Predictor, parsed: Parsed) -> list[Any]:
        return [
            {
                "entities": [
                    {"start": start, "end": end, "label": label, "text": text[start:end], "score": score}
                    for start, end, label, score in found
                ]
            }
            for text, found in zip(parsed.inputs, outputs[:, 0], strict=True)
        ]

    def logged(self, inputs: list[Any], answers: list[Any]) -> tuple[list[str], list[str] | None]:
        return inputs, None
