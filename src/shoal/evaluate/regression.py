"""Regression metrics (MAE, RMSE, R², MAPE) on per-row errors, vectorised over bootstrap resamples.

Every metric is a mean of a per-row loss (R² through the squared errors and the spread of the truth), so one
fancy-index per resample set gives CIs, and the paired test resamples the *same* rows for both contenders.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shoal.evaluate.classification import resample_indices
from shoal.evaluate.paired import paired_bootstrap

METRICS = ("mae", "rmse", "r2", "mape")
LOWER_IS_BETTER = frozenset({"mae", "rmse", "mape"})
#: the per-row loss whose paired resampling tests each metric
LOSS = {"mae": "absolute errors", "rmse": "squared errors", "r2": "squared errors", "mape": "absolute % errors"}


def _ape(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return np.abs(truth - pred) / np.maximum(np.abs(truth), 1e-9)


def metric_values(truth: np.ndarray, pred: np.ndarray, name: str, resamples: np.ndarray | None = None) -> np.ndarray:
    """The named metric, or one value per row of `resamples` (shape (B, n) of row indices)."""
    if resamples is not None:
        truth, pred = truth[resamples], pred[resamples]
    error = truth - pred
    if name == "mae":
        return np.abs(error).mean(axis=-1)
    if name == "rmse":
        return np.sqrt((error**2).mean(axis=-1))
    if name == "r2":
        spread = ((truth - truth.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)
        return 1.0 - (error**2).sum(axis=-1) / np.maximum(spread, 1e-12)
    if name == "mape":
        return _ape(truth, pred).mean(axis=-1)
    raise ValueError(f"unknown regression metric {name!r}; use one of {', '.join(METRICS)}")


def score(
    truth: np.ndarray,
    pred: np.ndarray,
    metric: str,
    *,
    bootstrap: int,
    seed: int,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every regression metric, the fleet metric's 95% bootstrap CI, and the interval coverage if given."""
    result: dict[str, Any] = {name: float(metric_values(truth, pred, name)) for name in METRICS}
    boot = metric_values(truth, pred, metric, resample_indices(len(truth), bootstrap, seed))
    result["metric"] = metric
    result["ci"] = [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]
    result.update(interval_summary(truth, lower, upper))
    result["n_test"] = len(truth)
    return result


def interval_summary(truth: np.ndarray, lower: np.ndarray | None, upper: np.ndarray | None) -> dict[str, float]:
    """Share of true values inside their prediction interval, and its mean width (nothing without one)."""
    if lower is None or upper is None or not (np.isfinite(lower).all() and np.isfinite(upper).all()):
        return {}
    return {
        "interval_coverage": float(((truth >= lower) & (truth <= upper)).mean()),
        "interval_mean_width": float((upper - lower).mean()),
    }


def paired_test(
    truth: np.ndarray, challenger: np.ndarray, champion: np.ndarray, metric: str, *, bootstrap: int, seed: int
) -> dict[str, Any]:
    """Paired bootstrap of the metric over the same resampled rows; Δ > 0: the challenger is better."""
    return paired_bootstrap(
        lambda pred, idx: metric_values(truth, pred, metric, idx),
        challenger,
        champion,
        lower_is_better=metric in LOWER_IS_BETTER,
        bootstrap=bootstrap,
        seed=seed,
        test=f"paired bootstrap on per-row {LOSS[metric]}",
    )
