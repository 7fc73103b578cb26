"""Live accuracy: how often each version's answers matched the labels users sent back as feedback."""

from __future__ import annotations

from typing import NamedTuple

from shoal.registry.prediction_log import Feedback, PredictionLog
from shoal.workspace import Workspace


class LiveAccuracy(NamedTuple):
    labels: int  # feedback labels received for the version's answers
    accuracy: float  # the share of them the version got right


def live_accuracy(ws: Workspace, model: str, log: PredictionLog) -> dict[int, LiveAccuracy]:
    """Live accuracy of each version of `model` that has feedback, by version number."""
    by_version: dict[int, list[Feedback]] = {}
    for item in log.feedback(model):
        by_version.setdefault(item.version, []).append(item)
    return {
        version: LiveAccuracy(len(items), right_answers(ws, model, version, items) / len(items))
        for version, items in sorted(by_version.items())
    }


def right_answers(ws: Workspace, model: str, version: int, items: list[Feedback]) -> int:
    """How many of version `version`'s answers the feedback `items` confirm. Predictions logged without their label
    are predicted again by that version (models are deterministic)."""
    predicted = [item.predicted for item in items]
    missing = [i for i, label in enumerate(predicted) if label is None]
    if missing:
        predictor = ws.load_predictor(ws.registry.version(model, version))
        for i, label in zip(missing, predictor.predict([items[i].text for i in missing]), strict=True):
            predicted[i] = label
    return sum(label == item.label for label, item in zip(predicted, items, strict=True))
