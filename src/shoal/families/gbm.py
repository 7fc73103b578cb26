"""`gbm`: scikit-learn's histogram gradient boosting; categories as native categorical splits, missing
numbers handled by the trees, early stopping on an internal validation share. `gbm-tuned` (its own module) is
the same model with a wider search."""

from __future__ import annotations

from typing import Any

from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline

from shoal.families import register
from shoal.families.base import Params
from shoal.families.tabular import Schema, TabularFamily, ordinal_features

#: early stopping: the share of the training rows held out to watch the loss, and how many iterations without a
#: gain on it end the boosting
VALIDATION_FRACTION = 0.1
N_ITER_NO_CHANGE = 20


@register
class Gbm(TabularFamily):
    name = "gbm"
    cost = 2.0
    expected_p95_ms = 8.0
    expected_size_mb = 5.0
    expected_train_seconds_per_1k_rows = 1.0

    def grid(self, n_rows: int) -> list[Params]:
        return [
            {"learning_rate": 0.1, "max_leaf_nodes": 31, "max_iter": 500},
            {"learning_rate": 0.1, "max_leaf_nodes": 63, "max_iter": 500, "l2_regularization": 1.0},
        ]

    def estimator(self, schema: Schema, params: Params, seed: int) -> Any:
        features, categorical = ordinal_features(schema)
        model = HistGradientBoostingRegressor(
            loss=params.get("loss", "squared_error"),
            learning_rate=params.get("learning_rate", 0.1),
            max_leaf_nodes=params.get("max_leaf_nodes", 31),
            min_samples_leaf=params.get("min_samples_leaf", 20),
            max_iter=params.get("max_iter", 500),
            l2_regularization=params.get("l2_regularization", 0.0),
            categorical_features=categorical if any(categorical) else None,
            early_stopping=True,
            validation_fraction=VALIDATION_FRACTION,
            n_iter_no_change=N_ITER_NO_CHANGE,
            random_state=seed,
        )
        return Pipeline([("features", features), ("gbm", model)])
