"""Evaluate one predictor on the frozen test set: quality with CIs (as its task kind scores it), and its costs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from shoal.data.sets import TestSet
from shoal.evaluate.profile import profile
from shoal.families import Predictor
from shoal.fleet import WorkspaceSpec
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
) -> tuple[dict[str, Any], np.ndarray]:
    """(metrics with the profile, the outputs the gate compares)."""
    metrics, outputs = task.score(predictor, test, metric, bootstrap=settings.evaluation.bootstrap, seed=settings.seed)
    metrics["test_hash"] = test.hash
    metrics["profile"] = profile(
        predictor,
        family,
        folder,
        task.profile_inputs(test),
        calls=settings.evaluation.latency_calls,
        measure_rss=settings.evaluation.measure_rss,
        cost_per_core_hour=settings.cost_per_core_hour,
        size_bytes=size_bytes,
    )
    return metrics, outputs
