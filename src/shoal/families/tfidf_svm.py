"""`tfidf-svm`: word + char n-gram TF-IDF and a linear SVM, calibrated (sigmoid) for probabilities."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sklearn.calibration import CalibratedClassifierCV
from sklearn.svm import LinearSVC

from shoal.families import register
from shoal.families.base import FeatureFamily, Params, class_weight
from shoal.families.runtime.sklearn_predictor import SklearnPredictor
from shoal.families.runtime.text_features import fit_tfidf, tfidf_pipeline, tfidf_transform

#: from this many training rows the calibration uses 2 folds (2 SVMs fitted on halves, instead of 3 on two thirds):
#: half the fitting and a third less to predict, and each half still holds 10,000 rows or more
TWO_FOLDS_FROM_ROWS = 20_000


def calibration_folds(targets: Sequence[str]) -> int:
    """The folds of the sigmoid calibration (each fits an SVM on the others, calibrated on its own): 3, or 2 from
    `TWO_FOLDS_FROM_ROWS` rows; never more than the rarest class has rows (but at least 2)."""
    rarest = min(Counter(targets).values())
    return max(2, min(2 if len(targets) >= TWO_FOLDS_FROM_ROWS else 3, rarest))


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

    def features(self, featurizer: Any, inputs: Sequence[str]) -> Any:
        return tfidf_transform(featurizer, inputs)

    def fit_head(
        self, features: Any, targets: Sequence[str], params: Params, seed: int, start: Any = None
    ) -> CalibratedClassifierCV:
        # liblinear begins at zero: `head_start` is the default (None), so `start` is never given
        svm = LinearSVC(C=params.get("C", 0.5), class_weight=class_weight(params), random_state=seed)
        return CalibratedClassifierCV(svm, cv=calibration_folds(targets), method="sigmoid").fit(features, list(targets))

    def assemble(self, featurizer: Any, head: Any) -> CalibratedPredictor:
        return CalibratedPredictor(tfidf_pipeline(featurizer, head))

    def load(self, folder: Path) -> CalibratedPredictor:
        return CalibratedPredictor.load(folder)
