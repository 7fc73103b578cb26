"""Evaluate one predictor on the frozen test set: quality with CIs, and its costs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shoal.evaluate.classification import score
from shoal.evaluate.profile import profile
from shoal.families import Predictor
from shoal.fleet import WorkspaceSpec


@dataclass
class TestSet:
    texts: list[str]
    labels: list[str]  # the global label list (train ∪ test), sorted
    truth: np.ndarray  # index into labels
    hash: str


def predict_indices(predictor: Predictor, test: TestSet) -> tuple[np.ndarray, np.ndarray]:
    """(predicted label indices in the global label list, probabilities in the predictor's columns)."""
    proba = predictor.predict_proba(test.texts)
    mapping = np.array([test.labels.index(label) if label in test.labels else -1 for label in predictor.labels])
    return mapping[proba.argmax(axis=1)], proba


def evaluate(
    predictor: Predictor,
    family: str,
    folder: Path,
    test: TestSet,
    metric: str,
    settings: WorkspaceSpec,
    size_bytes: int,
) -> tuple[dict[str, Any], np.ndarray]:
    pred, proba = predict_indices(predictor, test)
    metrics = score(
        test.truth, pred, proba, test.labels, metric, bootstrap=settings.evaluation.bootstrap, seed=settings.seed
    )
    metrics["test_hash"] = test.hash
    metrics["profile"] = profile(
        predictor,
        family,
        folder,
        test.texts,
        calls=settings.evaluation.latency_calls,
        measure_rss=settings.evaluation.measure_rss,
        cost_per_core_hour=settings.cost_per_core_hour,
        size_bytes=size_bytes,
    )
    return metrics, pred
