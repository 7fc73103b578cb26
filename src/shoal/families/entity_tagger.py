"""What the token-classification families share: a predictor's output (one cell per text: its entities with
character offsets and scores) and the training sentences as tokens and BIO tags (`runtime.tokens`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shoal.families.base import Predictor
from shoal.families.runtime.tokens import Entities, Found, boundaries, tags_of, tokenize

#: the one output column of a token-classification predictor
ENTITIES_COLUMN = "entities"


def entity_output(found: Sequence[Sequence[Found]]) -> np.ndarray:
    """Shape (n, 1), dtype object: each text's entities as a tuple of (start, end, label, score)."""
    out = np.empty((len(found), 1), dtype=object)
    for i, entities in enumerate(found):
        out[i, 0] = tuple(entities)
    return out


def tagged(texts: Sequence[str], targets: Sequence[Entities]) -> list[tuple[str, list[tuple[int, int]], list[str]]]:
    """Each training sentence as (text, token offsets, BIO tags): tokens are cut at entity boundaries, so every
    entity is whole tokens."""
    out = []
    for text, target in zip(texts, targets, strict=True):
        tokens = tokenize(text, boundaries(target.spans))
        out.append((text, tokens, tags_of(tokens, target.spans)))
    return out


class EntityPredictor(Predictor):
    """A predictor of entities: `predict_proba` gives `entity_output`."""

    labels = [ENTITIES_COLUMN]  # noqa: RUF012 (the column name every token-classification predictor shares)
