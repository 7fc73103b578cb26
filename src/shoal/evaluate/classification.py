"""Classification metrics from confusion matrices, vectorised so bootstrap resamples cost little.

Every metric is a function of a (…, K, K) confusion array (rows: truth, columns: prediction), so one
`np.bincount` per resample set gives CIs and paired tests for any metric in the fleet file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import binomtest

BASE_METRICS = ("accuracy", "macro_f1", "macro_recall", "mcc")


def confusion(truth: np.ndarray, pred: np.ndarray, k: int, resamples: np.ndarray | None = None) -> np.ndarray:
    """(K, K) counts, or (B, K, K) over index resamples of shape (B, n)."""
    if resamples is None:
        return np.bincount(truth * k + pred, minlength=k * k).reshape(k, k)
    b = resamples.shape[0]
    cells = (np.arange(b)[:, None] * k * k + truth[resamples] * k + pred[resamples]).ravel()
    return np.bincount(cells, minlength=b * k * k).reshape(b, k, k)


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=float), where=b != 0)


def metric_value(cm: np.ndarray, name: str, labels: list[str]) -> np.ndarray:
    """The named metric of one or many confusion matrices."""
    cm = cm.astype(float)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)
    predicted = cm.sum(axis=-2)
    total = cm.sum(axis=(-2, -1))
    if name == "accuracy":
        return _divide(tp.sum(axis=-1), total)
    recall = _divide(tp, support)
    precision = _divide(tp, predicted)
    f1 = _divide(2 * precision * recall, precision + recall)
    present = support > 0  # classes absent from the truth do not dilute macro averages
    if name == "macro_recall":
        return _divide((recall * present).sum(axis=-1), present.sum(axis=-1))
    if name == "macro_f1":
        return _divide((f1 * present).sum(axis=-1), present.sum(axis=-1))
    if name == "mcc":
        correct = tp.sum(axis=-1)
        numerator = correct * total - (support * predicted).sum(axis=-1)
        denominator = np.sqrt(total**2 - (predicted**2).sum(axis=-1)) * np.sqrt(total**2 - (support**2).sum(axis=-1))
        return _divide(numerator, denominator)
    if name.startswith("f1:"):
        label = name.removeprefix("f1:")
        if label not in labels:
            raise ValueError(f"metric {name}: label {label!r} never occurs in the data")
        return f1[..., labels.index(label)]
    raise ValueError(f"unknown metric {name!r}")


def expected_calibration_error(proba: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    confidence = proba.max(axis=1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            error += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(error)


def resample_indices(n: int, b: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(b, n))


def score(
    truth: np.ndarray, pred: np.ndarray, proba: np.ndarray, labels: list[str], metric: str, *, bootstrap: int, seed: int
) -> dict[str, Any]:
    """All quality numbers for one candidate on the test set. `truth`/`pred` index into `labels`."""
    k = len(labels)
    cm = confusion(truth, pred, k)
    names = list(dict.fromkeys([*BASE_METRICS, metric]))
    result: dict[str, Any] = {name: float(metric_value(cm, name, labels)) for name in names}
    boot = metric_value(confusion(truth, pred, k, resample_indices(len(truth), bootstrap, seed)), metric, labels)
    result["metric"] = metric
    result["ci"] = [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]
    support = cm.sum(axis=1)
    precision = _divide(np.diagonal(cm).astype(float), cm.sum(axis=0).astype(float))
    recall = _divide(np.diagonal(cm).astype(float), support.astype(float))
    f1 = _divide(2 * precision * recall, precision + recall)
    result["per_class"] = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    result["confusion"] = {"labels": labels, "matrix": cm.tolist()}
    result["ece"] = expected_calibration_error(proba, truth == pred)
    result["n_test"] = len(truth)
    return result


def paired_test(
    truth: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    labels: list[str],
    metric: str,
    *,
    bootstrap: int,
    seed: int,
) -> dict[str, Any]:
    """Is the challenger better than the champion on the same test examples?

    Accuracy uses McNemar's exact test on the discordant pairs; any other metric a paired bootstrap of
    the metric difference. Both report Δ (challenger − champion), its 95% CI and a one-sided p-value.
    """
    k = len(labels)
    idx = resample_indices(len(truth), bootstrap, seed)
    a = metric_value(confusion(truth, challenger, k, idx), metric, labels)
    b = metric_value(confusion(truth, champion, k, idx), metric, labels)
    deltas = a - b
    delta = float(
        metric_value(confusion(truth, challenger, k), metric, labels)
        - metric_value(confusion(truth, champion, k), metric, labels)
    )
    ci = [float(np.percentile(deltas, 2.5)), float(np.percentile(deltas, 97.5))]
    if metric == "accuracy":
        wins = int(((challenger == truth) & (champion != truth)).sum())
        losses = int(((challenger != truth) & (champion == truth)).sum())
        p = binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue if wins + losses else 1.0
        return {"test": "mcnemar", "delta": delta, "ci": ci, "p_value": float(p), "wins": wins, "losses": losses}
    p = (np.sum(deltas <= 0) + 1) / (bootstrap + 1)
    return {"test": "paired-bootstrap", "delta": delta, "ci": ci, "p_value": float(p)}
