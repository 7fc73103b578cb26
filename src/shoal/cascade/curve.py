"""The coverage–accuracy curve of a cascade, in numpy only: defer the least confident inputs to the fallback."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: the fractions deferred that `shoal eval` and the report show
FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)


def cascade_accuracy(deferred: np.ndarray, small_right: np.ndarray, fallback_right: np.ndarray) -> float:
    """Accuracy of the cascade when the `deferred` inputs (a mask) are answered by the fallback."""
    return float(np.where(deferred, fallback_right, small_right).mean())


def cascade_cost(deferred: float, costs: tuple[float, float]) -> float:
    """$ per million inputs when a fraction `deferred` goes on: every input pays the small model (`costs[0]`, $ per
    million), the deferred ones the fallback (`costs[1]`) too."""
    return costs[0] + deferred * costs[1]


def coverage_curve(
    confidence: np.ndarray,
    small_right: np.ndarray,
    fallback_right: np.ndarray,
    fractions: tuple[float, ...],
    costs: tuple[float, float],
) -> list[dict[str, float]]:
    """For each fraction, the cascade's accuracy and cost when that fraction of inputs, the least confident, is
    deferred."""
    order = np.argsort(confidence, kind="stable")
    points = []
    for fraction in fractions:
        deferred = np.zeros(len(confidence), dtype=bool)
        deferred[order[: round(fraction * len(confidence))]] = True
        accuracy = cascade_accuracy(deferred, small_right, fallback_right)
        points.append({"deferred": fraction, "accuracy": accuracy, "cost_per_million": cascade_cost(fraction, costs)})
    return points


def at_threshold(
    confidence: np.ndarray,
    small_right: np.ndarray,
    fallback_right: np.ndarray,
    threshold: float,
    costs: tuple[float, float],
) -> dict[str, Any]:
    """The cascade at its chosen threshold: fraction deferred, accuracy and $ per million (`cascade_cost`)."""
    deferred = confidence < threshold
    fraction = float(deferred.mean())
    return {
        "threshold": threshold if math.isfinite(threshold) else None,  # None: every input is deferred
        "deferred": fraction,
        "accuracy": cascade_accuracy(deferred, small_right, fallback_right),
        "cost_per_million": cascade_cost(fraction, costs),
    }
