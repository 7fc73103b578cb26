"""Hyper-parameter search by cross-validation on the training data only (never the test set).

Every (fold, params) fit runs in parallel; the best params' out-of-fold outputs are kept for the task's
`after_fit` (the label audit of text classification, the prediction intervals of regression), so the search
and those share one set of fits. The task kind decides the folds, the outputs and the score.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from joblib import Parallel, delayed

from shoal.families import Family, Params
from shoal.faults import checkpoint
from shoal.tasks.base import TaskKind

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """A pool worker's initializer: the kernel kills this worker when `parent` dies, even by SIGKILL, so no
    orphan goes on fitting after its trainer is gone (loky's own workers would finish their task first)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


@dataclass
class SearchResult:
    params: Params
    cv_score: float | None
    scores: list[dict[str, Any]]
    oof: np.ndarray  # out-of-fold outputs for the best params (classification: (n, len(labels)) probabilities)


def _fold_fit(
    task: TaskKind,
    family: Family,
    inputs: np.ndarray,
    targets: np.ndarray,
    train: np.ndarray,
    held: np.ndarray,
    params: Params,
    seed: int,
    labels: list[str],
) -> np.ndarray:
    model = family.fit(inputs[train].tolist(), targets[train].tolist(), params, seed)
    return task.fold_outputs(model, inputs[held].tolist(), labels)


def search(
    family: Family,
    inputs: list[Any],
    targets: list[Any],
    labels: list[str],
    metric: str,
    *,
    folds: int,
    seed: int,
    n_jobs: int,
    task: TaskKind | None = None,
) -> SearchResult:
    """The best of `family.grid` by cross-validated `metric` (`task` defaults to text classification)."""
    if task is None:
        from shoal.tasks.text_classification.kind import TextClassification

        task = TextClassification()
    x, y = np.empty(len(inputs), dtype=object), np.empty(len(targets), dtype=object)
    x[:], y[:] = inputs, targets  # element-wise: rows that are dicts stay dicts
    splits = task.cv_folds(targets, folds, seed)
    grid = family.grid(len(y))
    if not splits:  # a task without folds (forecasting: the backtest judges) takes the family's first setting
        return SearchResult(params=grid[0], cv_score=None, scores=[], oof=np.empty(0))
    jobs = [(p, f) for p in range(len(grid)) for f in range(len(splits))]
    # loky starts its workers with fork+exec, never a bare fork of this (threaded) process; they die with it
    parallel = Parallel(
        n_jobs=min(n_jobs, len(jobs)), backend="loky", initializer=die_with_parent, initargs=(os.getpid(),)
    )
    outputs = parallel(
        delayed(_fold_fit)(task, family, x, y, splits[f][0], splits[f][1], grid[p], seed, labels) for p, f in jobs
    )
    results = []
    for p, params in enumerate(grid):
        parts = {f: out for (q, f), out in zip(jobs, outputs, strict=True) if q == p}
        oof = np.zeros((len(y), *parts[0].shape[1:]))
        for f, out in parts.items():
            oof[splits[f][1]] = out
        results.append((task.cv_score(targets, oof, metric, labels), params, oof))
    checkpoint("search")
    # first best: grids list cheap first
    best = max(range(len(results)), key=lambda i: task.better(metric, results[i][0]))
    return SearchResult(
        params=results[best][1],
        cv_score=results[best][0],
        scores=[{"params": params, "cv_score": value} for value, params, _ in results],
        oof=results[best][2],
    )
