"""`tfidf-svm`: word + char n-gram TF-IDF and a linear SVM, calibrated (sigmoid) for probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sklearn.calibration import CalibratedClassifierCV
from sklearn.svm import LinearSVC

from shoal.families import register
from shoal.families.base import FeatureFamily, Params, class_weight
from shoal.families.runtime.sklearn_predictor import SklearnPredictor
from shoal.families.runtime.text_features import fit_tfidf, tfidf_pipeline


class CalibratedPredictor(SklearnPredictor):
    extra_trusted = ("sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration")


@register
class TfidfSvm(FeatureFamily):
    name = "tfidf-svm"
    task = "text-classification"
    cost = 1.0
    expected_p95_ms = 8.0
    expected_size_mb = 40.0
    expected_train_seconds_per_1k_rows = 5.0
    features_key = "tfidf-word-char"
    class_weighted = True

    def grid(self, n_rows: int) -> list[Params]:
        return [{"C": 0.3}, {"C": 1.0}]

    def fit_features(self, inputs: Sequence[str]) -> tuple[Any, Any]:
        return fit_tfidf(inputs)

    def fit_head(
        self, features: Any, targets: Sequence[str], params: Params, seed: int, start: Any = None
    ) -> CalibratedClassifierCV:
        # liblinear begins at zero: `head_start` is the default (None), so `start` is never given
        counts: dict[str, int] = {}
        for target in targets:
            counts[target] = counts.get(target, 0) + 1
        folds = max(2, min(3, min(counts.values())))
        svm = LinearSVC(C=params.get("C", 0.5), class_weight=class_weight(params), random_state=seed)
        return CalibratedClassifierCV(svm, cv=folds, method="sigmoid").fit(features, list(targets))

    def assemble(self, featurizer: Any, head: Any) -> CalibratedPredictor:
        return CalibratedPredictor(tfidf_pipeline(featurizer, head))

    def load(self, folder: Path) -> CalibratedPredictor:
        return CalibratedPredictor.load(folder)
