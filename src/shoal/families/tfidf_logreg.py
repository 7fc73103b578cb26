"""`tfidf-logreg`: word + char n-gram TF-IDF and multinomial logistic regression."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sklearn.linear_model import LogisticRegression

from shoal.families import register
from shoal.families.base import FeatureFamily, Params, class_weight
from shoal.families.runtime.sklearn_predictor import SklearnPredictor
from shoal.families.runtime.text_features import fit_tfidf, tfidf_pipeline


@register
class TfidfLogReg(FeatureFamily):
    name = "tfidf-logreg"
    task = "text-classification"
    cost = 1.0
    expected_p95_ms = 3.0
    expected_size_mb = 30.0
    expected_train_seconds_per_1k_rows = 6.0
    features_key = "tfidf-word-char"
    class_weighted = True

    def grid(self, n_rows: int) -> list[Params]:
        return [{"C": 3.0}, {"C": 20.0}]

    def fit_features(self, inputs: Sequence[str]) -> tuple[Any, Any]:
        return fit_tfidf(inputs)

    def fit_head(self, features: Any, targets: Sequence[str], params: Params, seed: int) -> LogisticRegression:
        head = LogisticRegression(
            C=params.get("C", 10.0), class_weight=class_weight(params), max_iter=300, random_state=seed
        )
        return head.fit(features, list(targets))

    def fit_heads(self, features: Any, targets: Sequence[str], grid: list[Params], seed: int) -> list[Any]:
        """The search's heads on one fold: each setting's solver starts from the previous setting's solution (the
        grid lists C growing, and a larger C's optimum lies near a smaller one's: Banking77's C=20 takes 16 L-BFGS
        iterations from C=3's solution instead of 36 from zero). The final fit starts from zero (`fit_head`)."""
        heads: list[Any] = []
        for params in grid:
            head = copy.deepcopy(heads[-1]) if heads else LogisticRegression(max_iter=300, random_state=seed)
            head.set_params(C=params.get("C", 10.0), class_weight=class_weight(params), warm_start=True)
            heads.append(head.fit(features, list(targets)))
        return heads

    def assemble(self, featurizer: Any, head: Any) -> SklearnPredictor:
        return SklearnPredictor(tfidf_pipeline(featurizer, head))

    def load(self, folder: Path) -> SklearnPredictor:
        return SklearnPredictor.load(folder)
