"""`tfidf-logreg`: word + char n-gram TF-IDF and multinomial logistic regression."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from shoal.families import register
from shoal.families.base import Family, Params
from shoal.families.runtime.sklearn_predictor import SklearnPredictor
from shoal.families.runtime.text_features import drop_stop_words, tfidf_features


@register
class TfidfLogReg(Family):
    name = "tfidf-logreg"
    task = "text-classification"
    cost = 1.0
    expected_p95_ms = 3.0
    expected_size_mb = 30.0
    expected_train_seconds_per_1k_rows = 6.0

    def grid(self, n_rows: int) -> list[Params]:
        return [{"C": 3.0}, {"C": 20.0}]

    def fit(self, inputs: Sequence[str], targets: Sequence[str], params: Params, seed: int) -> SklearnPredictor:
        model = Pipeline(
            [
                ("features", tfidf_features(len(inputs))),
                ("clf", LogisticRegression(C=params.get("C", 10.0), max_iter=300, random_state=seed)),
            ]
        )
        return SklearnPredictor(drop_stop_words(model.fit(list(inputs), list(targets))))

    def load(self, folder: Path) -> SklearnPredictor:
        return SklearnPredictor.load(folder)
