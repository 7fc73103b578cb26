"""The scikit-learn families predict through a lean path that must give the fitted pipeline's exact numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from shoal.families import get_family


@pytest.mark.parametrize("family_name", ["majority", "tfidf-logreg", "tfidf-svm"])
def test_lean_prediction_equals_the_pipeline_before_and_after_a_round_trip(
    family_name: str, sms: pd.DataFrame, tmp_path: Path
) -> None:
    train, test = sms.iloc[:1500], sms.iloc[1500:1800]
    family = get_family(family_name)
    predictor = family.fit(train["text"].tolist(), train["label"].tolist(), family.grid(len(train))[0], 0)
    texts = test["text"].tolist()
    expected = predictor.estimator.predict_proba(texts)  # type: ignore[attr-defined]
    np.testing.assert_allclose(predictor.predict_proba(texts), expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(predictor.predict_proba(texts[:1]), expected[:1], rtol=1e-6, atol=1e-9)
    predictor.save(tmp_path)
    loaded = family.load(tmp_path)
    np.testing.assert_allclose(loaded.predict_proba(texts), expected, rtol=1e-6, atol=1e-9)
    if family_name != "majority":  # a real model, not the floor: it must separate spam from ham
        truth, predicted = test["label"].to_numpy(), np.array(loaded.predict(texts))
        floor = (truth == "ham").mean()  # always answering "ham" (0.87 on these rows)
        accuracy = (predicted == truth).mean()
        assert 1 - accuracy <= (1 - floor) / 2, f"accuracy {accuracy:.3f}: not half the errors of {floor:.3f}"
        assert f1_score(truth, predicted, pos_label="spam") > 0.8  # the floor scores 0
