"""Evaluate one predictor on the frozen test set in two steps: its quality with CIs (as its task kind scores it),
which may run beside other work, and its costs, whose latency must be timed with nothing else running."""

from __future__ import annotations

from typing import Any

import numpy as np

from shoal.data.sets import TestSet
from shoal.evaluate.profile import profile
from shoal.families import Predictor
from shoal.fleet import WorkspaceSpec
from shoal.registry.records import Profile, VersionMetrics
from shoal.tasks.base import TaskKind


def quality(
    task: TaskKind, predictor: Predictor, test: TestSet, metric: str, settings: WorkspaceSpec
) -> tuple[dict[str, Any], np.ndarray]:
    """(every quality number of `predictor` on the test set with the fleet metric's bootstrap CI, its gate
    outputs)."""
    return task.score(predictor, test, metric, bootstrap=settings.evaluation.bootstrap, seed=settings.seed)


def with_costs(
    task: TaskKind,
    predictor: Predictor,
    scores: dict[str, Any],
    test: TestSet,
    settings: WorkspaceSpec,
    *,
    size_bytes: int,
    peak_rss: float | None,
) -> VersionMetrics:
    """The version's metrics: `quality`'s scores and the cost profile, its latency timed now (call it in a quiet
    phase: a fit on the other core would slow every timed call)."""
    cost = profile(
        predictor,
        task.profile_inputs(test),
        calls=settings.evaluation.latency_calls,
        seconds=settings.evaluation.latency_seconds,
        cost_per_core_hour=settings.cost_per_core_hour,
        size_bytes=size_bytes,
        peak_rss=peak_rss,
    )
    scores = dict(scores)
    name, ci, n_test = scores.pop("metric"), scores.pop("ci"), scores.pop("n_test")
    return VersionMetrics(name, ci, scores, n_test, test.hash, Profile(**cost))
