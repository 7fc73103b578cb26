"""`mean`: always the mean of the training targets. The floor of regression, like `majority` for classification."""

from __future__ import annotations

from typing import Any

from sklearn.dummy import DummyRegressor

from shoal.families import register
from shoal.families.base import Params
from shoal.families.tabular import Schema, TabularFamily


@register
class Mean(TabularFamily):
    name = "mean"
    cost = 0.01
    expected_p95_ms = 1.0
    expected_size_mb = 0.1
    expected_train_seconds_per_1k_rows = 0.01

    def estimator(self, schema: Schema, params: Params, seed: int) -> Any:
        return DummyRegressor(strategy="mean")
