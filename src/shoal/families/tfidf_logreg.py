"""`tfidf-logreg`: word + char n-gram TF-IDF and multinomial logistic regression."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sklearn.linear_model import LogisticRegression

from shoal.families import register
from shoal.families.base import FeatureFamily, Params
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

    def grid(self, n_rows: int) -> list[Params]:
        return [{"C": 3.0}, {"C": 20.0}]

    def fit_features(self, inputs: Sequence[str]) -> tuple[Any, Any]:
        return fit_tfidf(inputs)

    def fit_head(self, features: Any, targets: Sequence[str], params: Params, seed: int) -> LogisticRegression:
        head = LogisticRegression(C=params.get("C", 10.0), max_iter=300, random_state=seed)
        return head.fit(features, list(targets))

    def assemble(self, featurizer: Any, head: Any) -> SklearnPredictor:
        return SklearnPredictor(tfidf_pipeline(featurizer, head))

    def load(self, folder: Path) -> SklearnPredictor:
        return SklearnPredictor.load(folder)
