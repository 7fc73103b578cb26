"""Metrics agree with scikit-learn; CIs cover the point estimate; paired tests see real differences only."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, recall_score

from shoal.evaluate.classification import confusion, metric_value, paired_test, score


@pytest.fixture
def predictions() -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 4, 500)
    pred = np.where(rng.random(500) < 0.7, truth, rng.integers(0, 4, 500))
    return truth, pred, ["a", "b", "c", "d"]


def test_metrics_match_sklearn(predictions) -> None:
    truth, pred, labels = predictions
    cm = confusion(truth, pred, 4)
    assert metric_value(cm, "accuracy", labels) == pytest.approx(accuracy_score(truth, pred))
    assert metric_value(cm, "macro_f1", labels) == pytest.approx(f1_score(truth, pred, average="macro"))
    assert metric_value(cm, "macro_recall", labels) == pytest.approx(recall_score(truth, pred, average="macro"))
    assert metric_value(cm, "mcc", labels) == pytest.approx(matthews_corrcoef(truth, pred))
    assert metric_value(cm, "f1:c", labels) == pytest.approx(f1_score(truth, pred, labels=[2], average=None)[0])


def test_score_reports_ci_per_class_and_ece(predictions) -> None:
    truth, pred, labels = predictions
    proba = np.full((len(truth), 4), 0.1)
    proba[np.arange(len(truth)), pred] = 0.7
    result = score(truth, pred, proba, labels, "macro_f1", bootstrap=500, seed=0)
    low, high = result["ci"]
    assert low < result["macro_f1"] < high and high - low < 0.15
    assert set(result["per_class"]) == set(labels)
    assert sum(row["support"] for row in result["per_class"].values()) == len(truth)
    assert result["ece"] == pytest.approx(abs(0.7 - result["accuracy"]), abs=0.01)


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1"])
def test_paired_test_separates_better_from_equal(predictions, metric: str) -> None:
    truth, pred, labels = predictions
    better = pred.copy()
    wrong = np.flatnonzero(pred != truth)
    better[wrong[: len(wrong) // 2]] = truth[wrong[: len(wrong) // 2]]
    assert paired_test(truth, better, pred, labels, metric, bootstrap=500, seed=0)["p_value"] < 0.01
    same = paired_test(truth, pred, pred, labels, metric, bootstrap=500, seed=0)
    assert same["p_value"] > 0.5 and same["delta"] == 0
