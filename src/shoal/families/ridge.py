"""`ridge`: one-hot categories and scaled numbers (median-imputed) into ridge regression."""

from __future__ import annotations

from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shoal.families import register
from shoal.families.base import Params
from shoal.families.tabular import CATEGORICAL, NUMERIC, Schema, TabularFamily, columns_of

#: categories seen fewer times than this share one column
MIN_CATEGORY_ROWS = 5


@register
class RidgeRegression(TabularFamily):
    name = "ridge"
    cost = 0.1
    expected_p95_ms = 3.0
    expected_size_mb = 1.0
    expected_train_seconds_per_1k_rows = 0.05

    def grid(self, n_rows: int) -> list[Params]:
        return [{"alpha": 1.0}, {"alpha": 30.0}]

    def estimator(self, schema: Schema, params: Params, seed: int) -> Any:
        parts: list[tuple[str, Any, list[str]]] = []
        numeric, categorical = columns_of(schema, NUMERIC), columns_of(schema, CATEGORICAL)
        if numeric:
            parts.append(("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric))
        if categorical:
            encoder = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=MIN_CATEGORY_ROWS)
            parts.append(("cat", encoder, categorical))
        return Pipeline([("features", ColumnTransformer(parts)), ("ridge", Ridge(alpha=params.get("alpha", 1.0)))])
