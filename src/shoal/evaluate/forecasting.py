"""Forecast metrics over the points of a rolling-origin backtest: MASE, sMAPE and MAE, with bootstrap CIs.

MASE scales each absolute error by the in-sample MAE of the seasonal naive forecast on the history before that
window's origin (per series), so 1.0 is "as good as last season's value one step ahead". Every metric is a
mean of a per-point loss, so CIs and the paired test resample points.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shoal.evaluate.classification import resample_indices
from shoal.evaluate.paired import paired_bootstrap
from shoal.evaluate.regression import interval_summary

METRICS = ("mase", "smape", "mae")
LOSS = {"mase": "scaled absolute errors", "smape": "symmetric % errors", "mae": "absolute errors"}


def point_losses(truth: np.ndarray, pred: np.ndarray, scale: np.ndarray, name: str) -> np.ndarray:
    error = np.abs(truth - pred)
    if name == "mase":
        return error / scale
    if name == "smape":
        total = np.abs(truth) + np.abs(pred)
        return np.divide(200.0 * error, total, out=np.zeros_like(error), where=total > 0)
    if name == "mae":
        return error
    raise ValueError(f"unknown forecasting metric {name!r}; use one of {', '.join(METRICS)}")


def metric_values(
    truth: np.ndarray, pred: np.ndarray, scale: np.ndarray, name: str, resamples: np.ndarray | None = None
) -> np.ndarray:
    losses = point_losses(truth, pred, scale, name)
    return losses[resamples].mean(axis=-1) if resamples is not None else losses.mean()


def seasonal_scale(history: np.ndarray, season: int) -> float:
    """In-sample MAE of the seasonal naive forecast (naive when the history is shorter than two seasons)."""
    lag = season if len(history) > season + 1 else 1
    diffs = np.abs(history[lag:] - history[:-lag])
    scale = float(diffs.mean()) if len(diffs) else 0.0
    return scale if scale > 0 else 1.0


def score(
    truth: np.ndarray,
    pred: np.ndarray,
    scale: np.ndarray,
    metric: str,
    *,
    bootstrap: int,
    seed: int,
    lower: np.ndarray,
    upper: np.ndarray,
) -> dict[str, Any]:
    result: dict[str, Any] = {name: float(metric_values(truth, pred, scale, name)) for name in METRICS}
    boot = metric_values(truth, pred, scale, metric, resample_indices(len(truth), bootstrap, seed))
    result["metric"] = metric
    result["ci"] = [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]
    result.update(interval_summary(truth, lower, upper))
    result["n_test"] = len(truth)
    return result


def paired_test(
    truth: np.ndarray,
    scale: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    metric: str,
    *,
    bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    return paired_bootstrap(
        lambda pred, idx: metric_values(truth, pred, scale, metric, idx),
        challenger,
        champion,
        lower_is_better=True,
        bootstrap=bootstrap,
        seed=seed,
        test=f"paired bootstrap on per-point {LOSS[metric]} of the backtest",
    )
