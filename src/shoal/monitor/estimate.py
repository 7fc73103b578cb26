"""Accuracy estimated without labels (the idea of NannyML's CBPE for classifiers): when a model's confidence is
calibrated, the expected share of right answers in a window is the mean of its confidences, and the sampling spread of
that share follows from each answer being right with its own probability."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    accuracy: float
    ci: tuple[float, float]  # 95%, from the per-answer Bernoulli variances
    n: int


def estimated_accuracy(confidences: np.ndarray) -> Estimate:
    """The expected accuracy of answers given with these calibrated confidences (each its largest class
    probability after the version's temperature scaling, `shoal.cascade.calibration.confidence`)."""
    c = np.asarray(confidences, dtype=float)
    if len(c) == 0:
        raise ValueError("no answers to estimate the accuracy of")
    mean = float(c.mean())
    spread = 1.96 * float(np.sqrt(np.sum(c * (1 - c)))) / len(c)
    return Estimate(mean, (max(0.0, mean - spread), min(1.0, mean + spread)), len(c))
