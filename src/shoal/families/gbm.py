"""`gbm`: scikit-learn's histogram gradient boosting; categories as native categorical splits, missing
numbers handled by the trees, early stopping on an internal validation share."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from shoal.families import register
from shoal.families.base import Params
from shoal.families.tabular import CATEGORICAL, NUMERIC, Schema, TabularFamily, columns_of

#: native categorical splits take at most 255 bins; rarer categories beyond these share one
MAX_CATEGORIES = 250


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
        numeric, categorical = columns_of(schema, NUMERIC), columns_of(schema, CATEGORICAL)
        parts: list[tuple[str, Any, list[str]]] = []
        if categorical:
            encoder = OrdinalEncoder(
                handle_unknown="use_encoded_value",
                unknown_value=np.nan,
                encoded_missing_value=np.nan,
                max_categories=MAX_CATEGORIES,
            )
            parts.append(("cat", encoder, categorical))
        if numeric:
            parts.append(("num", "passthrough", numeric))
        mask = [True] * len(categorical) + [False] * len(numeric)
        model = HistGradientBoostingRegressor(
            learning_rate=params.get("learning_rate", 0.1),
            max_leaf_nodes=params.get("max_leaf_nodes", 31),
            max_iter=params.get("max_iter", 500),
            l2_regularization=params.get("l2_regularization", 0.0),
            categorical_features=mask if categorical else None,
            early_stopping=True,
            validation_fraction=0.1,
            n_iter_no_change=20,
            random_state=seed,
        )
        return Pipeline([("features", ColumnTransformer(parts)), ("gbm", model)])
