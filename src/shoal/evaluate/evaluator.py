"""Evaluate one predictor on the frozen test set: quality with CIs (as its task kind scores it), and its costs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shoal.data.sets import TestSet
from shoal.evaluate.profile import profile
from shoal.families import Predictor
from shoal.fleet import WorkspaceSpec
from shoal.registry.records import Profile, VersionMetrics
from shoal.tasks.base import TaskKind


def evaluate(
    task: TaskKind,
    predictor: Predictor,
    family: str,
    folder: Path,
    test: TestSet,
    metric: str,
    settings: WorkspaceSpec,
    size_bytes: int,
) -> tuple[VersionMetrics, np.ndarray]:
    """(the scores with the profile, the outputs the gate compares)."""
    scores, outputs = task.score(predictor, test, metric, bootstrap=settings.evaluation.bootstrap, seed=settings.seed)
    cost = profile(
        predictor,
        family,
        folder,
        task.profile_inputs(test),
        calls=settings.evaluation.latency_calls,
        measure_rss=settings.evaluation.measure_rss,
        cost_per_core_hour=settings.cost_per_core_hour,
        size_bytes=size_bytes,
    )
    scores = dict(scores)
    name, ci, n_test = scores.pop("metric"), scores.pop("ci"), scores.pop("n_test")
    return VersionMetrics(name, ci, scores, n_test, test.hash, Profile(**cost)), outputs
