"""Hyper-parameter search by cross-validation on the training data only (never the test set).

Every (family, params, fold) fit runs in parallel; the best params' out-of-fold outputs are kept for the task's
`after_fit` (the label audit of text classification, the prediction intervals of regression), so the search
and those share one set of fits. Families that build the same features (the TF-IDF families) fit them once per
fold and share them across their settings; their settings on one fold are one job (`FeatureFamily.fit_heads`,
which may start each setting from the previous one's solution). The task kind decides the folds, the outputs and
the score.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sklearn
from joblib import Parallel, delayed

from shoal.families import Family, Params
from shoal.families.base import FeatureFamily
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
    seconds: float = 0.0  # the family's own fits in the search (summed over the pool's processes)
    #: the training rows the search ran on, in `oof`'s order, when it ran on a sample of them (None: on all, in order)
    rows: np.ndarray | None = None
    #: where the final fit's solver may begin (`FeatureFamily.head_start`): the best setting's solution on the first
    #: fold moved onto the features of all training rows; None: from zero
    start: Any = None


@dataclass
class Searched:
    """The search of several families on the same rows: each family's result or why it failed, and the shared
    features (`FeatureFamily`) fitted on all training rows, by `features_key`, for the final fits, with the seconds
    spent fitting them (per fold and on all rows, summed over the pool's processes)."""

    results: dict[str, SearchResult]
    failed: dict[str, Failed]
    features: dict[str, tuple[Any, Any]]
    features_seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Failed:
    """A job's error, caught in the worker so one family's failure never stops the others."""

    error: str
    traceback: str


def isolated(job: Callable[..., Any]) -> Callable[..., Any]:
    """`job`, returning a `Failed` instead of raising."""

    @functools.wraps(job)
    def run(*args: Any) -> Any:
        try:
            return job(*args)
        except Exception as error:
            return Failed(f"{type(error).__name__}: {error}", traceback.format_exc())

    return run


@dataclass(frozen=True)
class Timed:
    """A pool job's result (or `Failed`) and the seconds the job took in its process."""

    value: Any
    seconds: float


def timed(job: Callable[..., Any]) -> Callable[..., Timed]:
    """`job` (already `isolated`), returning its result with its duration."""

    @functools.wraps(job)
    def run(*args: Any) -> Timed:
        started = time.perf_counter()
        value = job(*args)
        return Timed(value, time.perf_counter() - started)

    return run


class _Head:
    """A head fitted on features, as `TaskKind.fold_outputs` sees a predictor."""

    def __init__(self, head: Any) -> None:
        self.head = head
        self.labels = [str(label) for label in head.classes_]

    def predict_proba(self, features: Any) -> np.ndarray:
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return np.asarray(self.head.predict_proba(features), dtype=np.float64)


@timed
@isolated
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


@timed
@isolated
def _fold_features(
    family: FeatureFamily, inputs: np.ndarray, train: np.ndarray, held: np.ndarray
) -> tuple[Any, Any, Any]:
    """(the featurizer, the features of a fold's training rows, of its held-out rows), fitted on its training rows
    only (no leak)."""
    featurizer, fitted = family.fit_features(inputs[train].tolist())
    return featurizer, fitted, family.features(featurizer, inputs[held].tolist())


@timed
@isolated
def _all_features(family: FeatureFamily, inputs: np.ndarray) -> tuple[Any, Any]:
    return family.fit_features(inputs.tolist())


@timed
@isolated
def _head_fits(
    task: TaskKind,
    family: FeatureFamily,
    features: tuple[Any, Any, Any],
    targets: np.ndarray,
    train: np.ndarray,
    grid: list[Params],
    seed: int,
    labels: list[str],
    final: Any = None,
) -> tuple[list[np.ndarray], list[Any]]:
    """Every setting's held-out outputs on one fold, in `grid`'s order (`FeatureFamily.fit_heads`), and, given the
    featurizer `final` of all training rows, each setting's solution moved onto its features (`head_start`: where
    the final fit may begin; the optimum is the same, the path to it shorter)."""
    featurizer, fitted, held = features
    heads = family.fit_heads(fitted, targets[train].tolist(), grid, seed)
    outputs = [task.fold_outputs(_Head(head), held, labels) for head in heads]
    if final is None:
        return outputs, []
    everyone = targets.tolist()
    return outputs, [_start(family, family.assemble(featurizer, head), final, everyone) for head in heads]


def _start(family: FeatureFamily, fitted: Any, final: Any, targets: list[Any]) -> Any:
    """`family.head_start`, or None (from zero) when it fails: a start is only a shortcut, never a reason for the
    family's search to fail."""
    try:
        return family.head_start(fitted, final, targets)
    except Exception:
        return None


#: an idle pool process waits this long for work before it ends (loky's default is 5 minutes): a job process
#: started ahead of its job (`worker.job_process`) keeps its pool ready until the job comes
POOL_IDLE_SECONDS = 7 * 24 * 3600.0


def parallel_pool(n_jobs: int, n_tasks: int) -> Parallel:
    """The training pool (`n_jobs` processes, fewer for fewer tasks; one: this process). Every call of a process
    with the same size gets the same processes back (loky reuses them when the arguments are equal)."""
    # loky starts its workers with fork+exec, never a bare fork of this (threaded) process; they die with it
    return Parallel(
        n_jobs=max(1, min(n_jobs, n_tasks)),
        backend="loky",
        initializer=die_with_parent,
        initargs=(os.getpid(),),
        idle_worker_timeout=POOL_IDLE_SECONDS,
    )


def _ready(needs: list[Any]) -> int:
    """A pool job that does nothing: receiving it imports the modules of `needs` in the pool process."""
    return os.getpid()


def start_pool(n_jobs: int, needs: list[Any]) -> set[int]:
    """Start the training pool's processes now, each importing the search and the modules of `needs` (task kinds,
    families), so that a search started later finds them ready; returns their pids."""
    return set(parallel_pool(n_jobs, n_jobs)(delayed(_ready)(needs) for _ in range(n_jobs)))


def search_many(
    families: list[Family],
    inputs: list[Any],
    targets: list[Any],
    labels: list[str],
    metric: str,
    *,
    folds: int,
    seed: int,
    n_jobs: int,
    task: TaskKind,
    class_weight: str = "none",
    max_rows: int | None = None,
) -> Searched:
    """The best of each family's grid by cross-validated `metric`, the fits on `n_jobs` processes: a plain family
    one job per setting and fold; a feature-sharing family one job per fold for all its settings (`fit_heads`).
    Families that share features (`FeatureFamily.features_key`) fit them once per fold, on the fold's training
    rows, and once on all rows (kept for the final fits), instead of once per setting and fold. With `class_weight`
    balanced, every setting of a `class_weighted` family weighs classes inversely to their share. With more rows
    than `max_rows`, the folds are made of the task's sample of `max_rows` of them (`TaskKind.search_sample`), and
    the out-of-fold outputs cover those rows (`SearchResult.rows`); the features kept for the final fits are still
    fitted on all rows."""
    x, y = np.empty(len(inputs), dtype=object), np.empty(len(targets), dtype=object)
    x[:], y[:] = inputs, targets  # element-wise: rows that are dicts stay dicts
    sample = task.search_sample(targets, max_rows, seed) if max_rows is not None and len(y) > max_rows else None
    if sample is None:
        splits = task.cv_folds(targets, folds, seed)
    else:  # the sample's folds, as indices into all rows
        splits = [(sample[train], sample[held]) for train, held in task.cv_folds(y[sample].tolist(), folds, seed)]
    grids = {family.name: _weighted(family, family.grid(len(y)), class_weight) for family in families}
    if not splits:  # a task without folds (forecasting: the backtest judges) takes each family's first setting
        empty = {
            f.name: SearchResult(params=grids[f.name][0], cv_score=None, scores=[], oof=np.empty(0)) for f in families
        }
        return Searched(empty, {}, {})
    shared: dict[str, list[FeatureFamily]] = {}
    plain = []
    for family in families:
        if isinstance(family, FeatureFamily):
            shared.setdefault(family.features_key, []).append(family)
        else:
            plain.append(family)
    # first: every key's features per fold and on all rows, and the plain families' fits
    first: list[tuple[Any, ...]] = [(key, f) for key in shared for f in [*range(len(splits)), None]]
    first += [(family, p, f) for family in plain for p in range(len(grids[family.name])) for f in range(len(splits))]
    calls = []
    for job in first:
        if len(job) == 2:
            key, f = job
            calls.append(
                delayed(_all_features)(shared[key][0], x)
                if f is None
                else delayed(_fold_features)(shared[key][0], x, splits[f][0], splits[f][1])
            )
        else:
            family, p, f = job
            params = grids[family.name][p]
            calls.append(delayed(_fold_fit)(task, family, x, y, splits[f][0], splits[f][1], params, seed, labels))
    parallel = parallel_pool(n_jobs, len(calls))
    ran: dict[tuple[Any, ...], Timed] = dict(zip(first, parallel(calls), strict=True))
    done = {job: out.value for job, out in ran.items()}
    spent: dict[str, float] = {family.name: 0.0 for family in families}  # each family's own jobs
    failed: dict[str, Failed] = {}
    outputs: dict[tuple[str, int, int], np.ndarray] = {}
    for job, out in done.items():
        if len(job) == 3:
            family, p, f = job
            spent[family.name] += ran[job].seconds
            if isinstance(out, Failed):
                failed.setdefault(family.name, out)
            else:
                outputs[family.name, p, f] = out
    features: dict[str, tuple[Any, Any]] = {}
    features_seconds: dict[str, float] = {}
    heads = []
    for key, members in shared.items():
        folds_and_all = [*range(len(splits)), None]
        features_seconds[key] = sum(ran[key, f].seconds for f in folds_and_all)
        broken = next((done[key, f] for f in folds_and_all if isinstance(done[key, f], Failed)), None)
        if broken is not None:
            failed.update({family.name: broken for family in members})
            continue
        features[key] = done[key, None]
        heads += [(family, f) for family in members for f in range(len(splits))]
    # then: each sharing family's settings on the fold features, one job per family and fold (`fit_heads`)
    # (the first fold's jobs also move each setting's solution onto the features of all rows: the final fit's start)
    head_outputs = parallel_pool(n_jobs, len(heads))(
        delayed(_head_fits)(
            task,
            family,
            done[family.features_key, f],
            y,
            splits[f][0],
            grids[family.name],
            seed,
            labels,
            features[family.features_key][0] if f == 0 else None,
        )
        for family, f in heads
    )
    starts: dict[tuple[str, int], Any] = {}
    for (family, f), head_out in zip(heads, head_outputs, strict=True):
        spent[family.name] += head_out.seconds
        if isinstance(head_out.value, Failed):
            failed.setdefault(family.name, head_out.value)
        else:
            settings, moved = head_out.value
            outputs.update({(family.name, p, f): setting for p, setting in enumerate(settings)})
            starts.update({(family.name, p): start for p, start in enumerate(moved)})
    checkpoint("search")
    results = {
        family.name: _best(
            task, family, grids[family.name], splits, outputs, targets, metric, labels, spent, sample, starts
        )
        for family in families
        if family.name not in failed
    }
    return Searched(results, failed, features, features_seconds)


def _weighted(family: Family, grid: list[Params], class_weight: str) -> list[Params]:
    if class_weight != "balanced" or not family.class_weighted:
        return grid
    return [{**params, "class_weight": "balanced"} for params in grid]


def _best(
    task: TaskKind,
    family: Family,
    grid: list[Params],
    splits: list[tuple[np.ndarray, np.ndarray]],
    outputs: dict[tuple[str, int, int], np.ndarray],
    targets: list[Any],
    metric: str,
    labels: list[str],
    spent: dict[str, float],
    sample: np.ndarray | None,
    starts: dict[tuple[str, int], Any],
) -> SearchResult:
    """The best setting by `metric` on the out-of-fold outputs (of the rows searched: all, or the `sample`)."""
    rows = np.arange(len(targets)) if sample is None else sample
    searched = [targets[i] for i in rows]
    position = np.empty(len(targets), dtype=np.int64)
    position[rows] = np.arange(len(rows))  # where each searched row's output goes
    results = []
    for p, params in enumerate(grid):
        parts = {f: outputs[family.name, p, f] for f in range(len(splits))}
        # numbers, or objects when a task's outputs are (token classification: each sentence's entities)
        kind = object if parts[0].dtype == object else np.float64
        oof = np.zeros((len(rows), *parts[0].shape[1:]), dtype=kind)
        for f, out in parts.items():
            oof[position[splits[f][1]]] = out
        results.append((task.cv_score(searched, oof, metric, labels), params, oof))
    # first best: grids list cheap first
    best = max(range(len(results)), key=lambda i: task.better(metric, results[i][0]))
    return SearchResult(
        params=results[best][1],
        cv_score=results[best][0],
        scores=[{"params": params, "cv_score": value} for value, params, _ in results],
        oof=results[best][2],
        seconds=spent[family.name],
        rows=sample,
        start=starts.get((family.name, best)),
    )


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
    class_weight: str = "none",
    max_rows: int | None = None,
) -> SearchResult:
    """The best of `family.grid` by cross-validated `metric` (`task` defaults to text classification)."""
    if task is None:
        from shoal.tasks.text_classification.kind import TextClassification

        task = TextClassification()
    found = search_many(
        [family],
        inputs,
        targets,
        labels,
        metric,
        folds=folds,
        seed=seed,
        n_jobs=n_jobs,
        task=task,
        class_weight=class_weight,
        max_rows=max_rows,
    )
    if family.name in found.failed:
        raise SearchFailed(found.failed[family.name].error)
    return found.results[family.name]


class SearchFailed(RuntimeError):
    """A family's search failed in a worker (the message names the error raised there)."""
