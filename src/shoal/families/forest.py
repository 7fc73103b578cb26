"""What the tree-ensemble families (`random-forest`, `extra-trees`) share: categories as ordinal codes and
missing values as NaN (`ordinal_features`; scikit-learn's forests route NaN at each split), `N_TREES` trees on one
core, and a search over the leaf size and the share of features tried at each split.

The leaf size also bounds the artifact: a tree holds about 2 × rows / leaf size nodes (~70 bytes each), so the
smallest leaf in the grid is 3 rows, and the trees are at most `MAX_DEPTH` deep.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sklearn.pipeline import Pipeline

from shoal.families.base import Params
from shoal.families.tabular import Schema, TabularFamily, ordinal_features

N_TREES = 100
MAX_DEPTH = 30


class ForestFamily(TabularFamily):
    """A scikit-learn forest regressor (`forest`) on the ordinal features."""

    forest: ClassVar[type]
    expected_p95_ms = 15.0
    expected_size_mb = 50.0
    expected_train_seconds_per_1k_rows = 1.0

    def grid(self, n_rows: int) -> list[Params]:
        return [{"min_samples_leaf": 3, "max_features": 0.5}, {"min_samples_leaf": 8, "max_features": 1.0}]

    def estimator(self, schema: Schema, params: Params, seed: int) -> Any:
        features, _ = ordinal_features(schema)
        model = self.forest(
            n_estimators=N_TREES,
            min_samples_leaf=params.get("min_samples_leaf", 3),
            max_features=params.get("max_features", 0.5),
            max_depth=MAX_DEPTH,
            n_jobs=1,
            random_state=seed,
        )
        return Pipeline([("features", features), ("forest", model)])
