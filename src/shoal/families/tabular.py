"""What the regression families share: rows (dicts) -> a typed frame, a scikit-learn regressor, an interval.

A `TabularPredictor` takes feature rows as a predict request carries them (`{"column": value, ...}`), builds
a frame with the training schema's column types, and returns `[value, lower, upper]` per row. The interval
is value ± a quantile of the absolute out-of-fold residuals of the search (`set_interval`), so it is the same
for every row and honest about the family's error. Saved as skops (trusted types only) + JSON.

Categorical columns, by family: `ridge` one-hot encodes them; the tree families (`gbm`, `gbm-tuned`,
`random-forest`, `extra-trees`) take them as ordinal codes (`ordinal_features`), which `gbm` and `gbm-tuned` split
natively as categories and the forests split as ordered codes. A category unseen in training, or missing, is NaN
for the trees (handled as a missing value).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import OrdinalEncoder

from shoal.families.base import Family, Params, Predictor, read_json, write_json
from shoal.families.runtime.sklearn_predictor import (
    MODEL_FILE,
    UntrustedArtifact,
    count_parameters,
    dump_skops,
    load_skops,
)
from shoal.families.runtime.threads import single_thread

NUMERIC, CATEGORICAL = "numeric", "categorical"
MISSING_CATEGORY = "__missing__"
SCHEMA_FILE, INTERVAL_FILE = "schema.json", "interval.json"
INTERVAL_LEVEL = 0.9
#: skops types the tabular pipelines hold beyond skops' defaults (checked on every load)
TRUSTED = (
    "functools.partial",  # of check_array below; skops still checks the function a partial wraps
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",  # the fitted trees of `random-forest` and `extra-trees` (arrays of nodes)
    "sklearn.utils.validation.check_array",
)
#: an ordinal-encoded column takes at most this many categories; rarer ones beyond share one code (native
#: categorical splits of HistGradientBoosting take at most 255 bins)
MAX_CATEGORIES = 250

Schema = dict[str, str]


def schema_of_rows(rows: Sequence[dict[str, Any]]) -> Schema:
    """Training rows -> schema: a column holding any string is categorical, else numeric."""
    columns = list(rows[0]) if rows else []
    return {c: CATEGORICAL if any(isinstance(row.get(c), str) for row in rows) else NUMERIC for c in columns}


def _number(value: Any) -> float:
    return np.nan if value is None else float(value)


def _category(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return MISSING_CATEGORY
    return str(value)


def check_rows(schema: Schema, rows: Sequence[Any]) -> list[str]:
    """Why rows do not fit the schema (for a 422), or []: every column present, nothing else, right types."""
    problems = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append(f"inputs[{i}]: expected an object of feature values, got {type(row).__name__}")
            continue
        missing = [c for c in schema if c not in row]
        unknown = [c for c in row if c not in schema]
        if missing:
            problems.append(f"inputs[{i}]: missing feature(s) {', '.join(missing)} (send null for an unknown value)")
        if unknown:
            problems.append(f"inputs[{i}]: unknown feature(s) {', '.join(unknown)}")
        for column, kind in schema.items():
            value = row.get(column)
            if value is None:
                continue
            if kind == NUMERIC and (isinstance(value, bool) or not isinstance(value, int | float)):
                problems.append(f"inputs[{i}].{column}: expected a number or null, got {value!r}")
            elif kind == CATEGORICAL and not isinstance(value, str):
                problems.append(f"inputs[{i}].{column}: expected a string or null, got {value!r}")
    return problems


class TabularPredictor(Predictor):
    def __init__(self, estimator: Any, schema: Schema, half_width: float | None = None) -> None:
        self.labels = ["value", "lower", "upper"]
        self.estimator = estimator
        self.schema = schema
        self.half_width = half_width

    def frame(self, rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
        data: dict[str, np.ndarray] = {}
        for column, kind in self.schema.items():
            if kind == NUMERIC:
                data[column] = np.array([_number(row.get(column)) for row in rows], dtype=np.float64)
            else:
                data[column] = np.array([_category(row.get(column)) for row in rows], dtype=object)
        return pd.DataFrame(data)

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
        """Shape (n, 3): the predicted value and the interval's lower and upper bounds (NaN before
        `set_interval`). The name is the batcher's entry point shared by every task."""
        with single_thread():
            value = np.asarray(self.estimator.predict(self.frame(inputs)), dtype=np.float64)
        width = np.nan if self.half_width is None else self.half_width
        return np.column_stack([value, value - width, value + width])

    def warm_up_inputs(self) -> list[Any]:
        return [dict.fromkeys(self.schema)]

    def check_inputs(self, inputs: Sequence[Any]) -> list[str]:
        return check_rows(self.schema, inputs)

    def set_interval(self, residuals: np.ndarray, level: float = INTERVAL_LEVEL) -> None:
        """Half-width of the `level` interval: the conformal quantile of absolute held-out residuals."""
        errors = np.abs(residuals[np.isfinite(residuals)])
        if len(errors):
            q = min(1.0, level * (len(errors) + 1) / len(errors))
            self.half_width = float(np.quantile(errors, q))

    def save(self, folder: Path) -> None:
        dump_skops(self.estimator, folder / MODEL_FILE)
        write_json(folder / SCHEMA_FILE, list(self.schema.items()))
        write_json(folder / INTERVAL_FILE, {"level": INTERVAL_LEVEL, "half_width": self.half_width})

    def n_parameters(self) -> int:
        return count_parameters(self.estimator) + _tree_nodes(self.estimator)

    @classmethod
    def load(cls, folder: Path) -> TabularPredictor:
        schema = dict(read_json(folder / SCHEMA_FILE))
        interval = read_json(folder / INTERVAL_FILE)
        estimator = load_skops(folder / MODEL_FILE, TRUSTED)
        check_trees(estimator, folder / MODEL_FILE)
        return cls(estimator, schema, interval["half_width"])


def check_trees(estimator: Any, path: Path) -> None:
    """Refuse (`UntrustedArtifact`) trees whose nodes point outside their arrays. skops checks the types of a file,
    not its numbers, and scikit-learn's compiled tree walks index nodes, features and category bitsets without
    bounds checks (why skops leaves `sklearn.tree._tree.Tree` untrusted by default): an edited file could make a
    prediction read or loop outside the model. Each split must point at two later nodes (so every walk ends at a
    leaf) and at a feature the model has; a categorical split at a category bitset it holds."""
    model = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    n_features = int(getattr(model, "n_features_in_", 0))
    problems = []
    for i, tree in enumerate(getattr(model, "estimators_", None) or []):
        inner = tree.tree_
        left, right, feature = inner.children_left, inner.children_right, inner.feature
        if inner.n_features != n_features:
            problems.append(f"tree {i}: built for {inner.n_features} features, the model has {n_features}")
        problems += _node_problems(f"tree {i}", left, right, feature, left == -1, n_features)
        if inner.value.shape[0] != len(left):
            problems.append(f"tree {i}: {inner.value.shape[0]} values for {len(left)} nodes")
    known = getattr(model, "is_categorical_", None)
    for i, iteration in enumerate(getattr(model, "_predictors", None) or []):
        for tree in iteration:
            nodes, where = tree.nodes, f"boosting iteration {i}"
            leaf = nodes["is_leaf"].astype(bool)
            found = _node_problems(where, nodes["left"], nodes["right"], nodes["feature_idx"], leaf, n_features)
            categorical = ~leaf & nodes["is_categorical"].astype(bool)
            if found or not categorical.any():
                problems += found
            elif np.any(nodes["bitset_idx"][categorical] >= len(tree.raw_left_cat_bitsets)):
                problems.append(f"{where}: a categorical split names a category bitset the tree lacks")
            elif known is None or not np.asarray(known)[nodes["feature_idx"][categorical]].all():
                problems.append(f"{where}: a categorical split on a feature that is not categorical")
    if problems:
        raise UntrustedArtifact(f"{path}: malformed trees: {'; '.join(problems[:3])}")


def _node_problems(where: str, left: Any, right: Any, feature: Any, leaf: Any, n_features: int) -> list[str]:
    """Why a tree's node arrays are unsafe to walk, or []."""
    left, right, feature = (np.asarray(a, dtype=np.int64) for a in (left, right, feature))
    n, split = len(left), ~np.asarray(leaf, dtype=bool)
    if n == 0:
        return [f"{where}: no nodes"]
    index = np.arange(n)[split]
    left, right = left[split], right[split]
    if np.any((left <= index) | (left >= n) | (right <= index) | (right >= n)):
        return [f"{where}: a split points at a node that is not after it in the tree"]
    if np.any((feature[split] < 0) | (feature[split] >= n_features)):
        return [f"{where}: a split on a feature the model does not have"]
    return []


def _tree_nodes(estimator: Any) -> int:
    """Nodes of a fitted tree ensemble (HistGradientBoosting's predictors or a forest's trees); 0 for others."""
    model = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    trees = getattr(model, "_predictors", None) or []
    forest = getattr(model, "estimators_", None)
    return sum(tree.nodes.size for iteration in trees for tree in iteration) + sum(
        tree.tree_.node_count for tree in (forest if isinstance(forest, list) else [])
    )


class TabularFamily(Family):
    """A scikit-learn regressor over the typed frame; subclasses build the estimator."""

    task = "regression"
    expected_p95_ms = 5.0
    expected_size_mb = 5.0
    expected_train_seconds_per_1k_rows = 0.5

    @abstractmethod
    def estimator(self, schema: Schema, params: Params, seed: int) -> Any:
        """An unfitted estimator taking the typed frame."""

    def fit(self, inputs: Sequence[Any], targets: Sequence[Any], params: Params, seed: int) -> TabularPredictor:
        predictor = TabularPredictor(None, schema_of_rows(inputs))
        x = predictor.frame(inputs)
        with single_thread():
            predictor.estimator = self.estimator(predictor.schema, params, seed).fit(x, np.asarray(targets, float))
        return predictor

    def load(self, folder: Path) -> TabularPredictor:
        return TabularPredictor.load(folder)


def columns_of(schema: Schema, kind: str) -> list[str]:
    return [c for c, k in schema.items() if k == kind]


def ordinal_features(schema: Schema) -> tuple[ColumnTransformer, list[bool]]:
    """The tree families' features: each categorical column as ordinal codes (first; an unseen or missing category
    is NaN), then the numeric columns as they are (NaN for missing); and which output columns are categorical."""
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
    return ColumnTransformer(parts), [True] * len(categorical) + [False] * len(numeric)
