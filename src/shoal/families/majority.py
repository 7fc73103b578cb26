"""`majority`: always the most frequent training label, with the training label frequencies as
probabilities. The floor every gate compares a first version against."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sklearn.dummy import DummyClassifier

from shoal.families import register
from shoal.families.base import Family, Params
from shoal.families.runtime.sklearn_predictor import SklearnPredictor


@register
class Majority(Family):
    name = "majority"
    task = "text-classification"
    cost = 0.01
    expected_p95_ms = 0.2
    expected_size_mb = 0.1
    expected_train_seconds_per_1k_rows = 0.01

    def fit(self, inputs: Sequence[str], targets: Sequence[str], params: Params, seed: int) -> SklearnPredictor:
        return SklearnPredictor(DummyClassifier(strategy="prior").fit(list(inputs), list(targets)))

    def load(self, folder: Path) -> SklearnPredictor:
        return SklearnPredictor.load(folder)
