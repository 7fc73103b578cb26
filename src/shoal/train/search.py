"""Hyper-parameter search by cross-validation on the training data only (never the test set).

Every (fold, params) fit runs in parallel; the best params' out-of-fold probabilities are kept for the
label audit, so the search and the audit share one set of fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.model_selection import KFold, StratifiedKFold

from shoal.evaluate.classification import confusion, metric_value
from shoal.families import Family, Params


@dataclass
class SearchResult:
    params: Params
    cv_score: float
    scores: list[dict[str, Any]]
    oof_proba: np.ndarray  # (n, len(labels)) for the best params


def align(proba: np.ndarray, model_labels: list[str], labels: list[str]) -> np.ndarray:
    """Re-order probability columns from a model's labels to the global label list."""
    out = np.zeros((proba.shape[0], len(labels)))
    out[:, [labels.index(label) for label in model_labels]] = proba
    return out


def _fold_fit(
    family: Family,
    texts: np.ndarray,
    targets: np.ndarray,
    train: np.ndarray,
    held: np.ndarray,
    params: Params,
    seed: int,
    labels: list[str],
) -> np.ndarray:
    model = family.fit(texts[train].tolist(), targets[train].tolist(), params, seed)
    return align(model.predict_proba(texts[held].tolist()), model.labels, labels)


def search(
    family: Family,
    texts: list[str],
    targets: list[str],
    labels: list[str],
    metric: str,
    *,
    folds: int,
    seed: int,
    n_jobs: int,
) -> SearchResult:
    x, y = np.asarray(texts, dtype=object), np.asarray(targets, dtype=object)
    counts = np.unique(y, return_counts=True)[1]
    folds = max(2, min(folds, len(y)))
    splitter = (
        StratifiedKFold(folds, shuffle=True, random_state=seed)
        if counts.min() >= folds
        else KFold(folds, shuffle=True, random_state=seed)
    )
    splits = list(splitter.split(x, y))
    grid = family.grid(len(y))
    jobs = [(p, f) for p in range(len(grid)) for f in range(len(splits))]
    outputs = Parallel(n_jobs=min(n_jobs, len(jobs)))(
        delayed(_fold_fit)(family, x, y, splits[f][0], splits[f][1], grid[p], seed, labels) for p, f in jobs
    )
    truth = np.array([labels.index(label) for label in y])
    results = []
    for p, params in enumerate(grid):
        oof = np.zeros((len(y), len(labels)))
        for (q, f), proba in zip(jobs, outputs, strict=True):
            if q == p:
                oof[splits[f][1]] = proba
        value = float(metric_value(confusion(truth, oof.argmax(axis=1), len(labels)), metric, labels))
        results.append((value, params, oof))
    best = max(range(len(results)), key=lambda i: results[i][0])  # first best: grids list cheap first
    return SearchResult(
        params=results[best][1],
        cv_score=results[best][0],
        scores=[{"params": params, "cv_score": value} for value, params, _ in results],
        oof_proba=results[best][2],
    )
