"""`tfidf-svm`: word + char n-gram TF-IDF and a linear SVM, calibrated (sigmoid) for probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from shoal.families import register
from shoal.families.base import Family, Params
from shoal.families.runtime.sklearn_predictor import SklearnPredictor
from shoal.families.runtime.text_features import drop_stop_words, tfidf_features


class CalibratedPredictor(SklearnPredictor):
    extra_trusted = ("sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration")


@register
class TfidfSvm(Family):
    name = "tfidf-svm"
    task = "text-classification"
    cost = 1.0
    expected_p95_ms = 8.0
    expected_size_mb = 40.0
    expected_train_seconds_per_1k_rows = 5.0

    def grid(self, n_rows: int) -> list[Params]:
        return [{"C": 0.3}, {"C": 1.0}]

    def fit(self, inputs: Sequence[str], targets: Sequence[str], params: Params, seed: int) -> CalibratedPredictor:
        counts: dict[str, int] = {}
        for target in targets:
            counts[target] = counts.get(target, 0) + 1
        folds = max(2, min(3, min(counts.values())))
        svm = LinearSVC(C=params.get("C", 0.5), random_state=seed)
        model = Pipeline(
            [
                ("features", tfidf_features(len(inputs))),
                ("clf", CalibratedClassifierCV(svm, cv=folds, method="sigmoid")),
            ]
        )
        return CalibratedPredictor(drop_stop_words(model.fit(list(inputs), list(targets))))

    def load(self, folder: Path) -> CalibratedPredictor:
        return CalibratedPredictor.load(folder)
