"""Accuracy estimated without labels (the idea of NannyML's CBPE for classifiers): when a model's confidence is
calibrated, the expected share of right answers in a window is the mean of its confidences, and the sampling spread of
that share follows from each answer being right with its own probability."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


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


def shortfall_p(confidences: np.ndarray, floor: float) -> float:
    """The p-value of "these answers are right at least `floor` of the time" from their calibrated confidences alone
    (each answer right with its own probability; the normal approximation of their sum): small when the estimated
    accuracy is clearly below `floor`."""
    c = np.asarray(confidences, dtype=float)
    spread = float(np.sqrt(np.sum(c * (1 - c)))) / len(c)
    if spread == 0:
        return 0.0 if c.mean() < floor else 1.0
    return float(stats.norm.cdf((c.mean() - floor) / spread))


def live_shortfall_p(right: int, labelled: int, floor: float) -> float:
    """The p-value of "the version is right at least `floor` of the time" from `right` of `labelled` feedback labels
    (exact binomial)."""
    return float(stats.binom.cdf(right, labelled, floor))
