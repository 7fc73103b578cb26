"""Confidence cascades without a server: the fleet-file checks, the calibration and the threshold for each target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shoal.cascade.calibration import (
    Calibration,
    accuracy_threshold,
    calibrate,
    confidence,
    deferral_threshold,
    fit_temperature,
    threshold,
)
from shoal.cascade.curve import at_threshold, coverage_curve
from shoal.cascade.spec import CascadeSpec
from shoal.evaluate.classification import paired_test
from shoal.fleet import FleetError, parse_fleet
from shoal.gate import Decision, drop_verdict


def _fleet(small: dict[str, Any], **others: dict[str, Any]) -> dict[str, Any]:
    base = {"task": "text-classification", "families": ["tfidf-logreg"]}
    models = {"small": {**base, **small}, "big": dict(base)}
    models.update({name: {**base, **spec} for name, spec in others.items()})
    return {"models": models}


@pytest.mark.parametrize(
    ("small", "others", "expected"),
    [
        ({"cascade": {"fallback": "big"}}, {}, "models.small.cascade: set exactly one of"),
        (
            {"cascade": {"fallback": "big", "max_deferral": 0.2, "target_accuracy": 0.9}},
            {},
            "models.small.cascade: set exactly one of",
        ),
        ({"cascade": {"fallback": "nope", "max_deferral": 0.2}}, {}, "models.small.cascade.fallback: no model 'nope'"),
        ({"cascade": {"fallback": "small", "max_deferral": 0.2}}, {}, "cannot be its own fallback"),
        (
            {"cascade": {"fallback": "r", "max_deferral": 0.2}},
            {"r": {"task": "regression", "target_column": "y", "families": ["ridge"], "metric": "mae"}},
            "models.small.cascade.fallback: 'r' is a regression model",
        ),
        (
            {"labels": ["a", "b"], "cascade": {"fallback": "other", "max_deferral": 0.2}},
            {"other": {"labels": ["a", "c"]}},
            "models.small.cascade.fallback: 'other' declares other labels",
        ),
        (
            {"cascade": {"fallback": "big", "max_deferral": 0.2}},
            {"big": {"cascade": {"fallback": "small", "target_accuracy": 0.9}}},
            "models.big.cascade.fallback: the chain of fallbacks comes back to 'big'",
        ),
        ({"cascade": {"fallback": "big", "max_deferral": 1.5}}, {}, "models.small.cascade.max_deferral"),
        ({"cascade": {"fallback": "big", "max_deferral": 0.2, "spend": 1}}, {}, "cascade.spend: unknown key"),
    ],
)
def test_bad_cascades_name_the_key_path(small: dict[str, Any], others: dict[str, Any], expected: str) -> None:
    with pytest.raises(FleetError, match=r"shoal\.yaml") as raised:
        parse_fleet(_fleet(small, **others), Path("shoal.yaml"))
    assert expected in str(raised.value)


def test_a_valid_cascade_is_read() -> None:
    cascade = {"fallback": "big", "target_accuracy": 0.95, "max_fallback_per_second": 50, "gate": True}
    fleet = parse_fleet(_fleet({"cascade": cascade}), Path("shoal.yaml"))
    spec = fleet.models["small"].cascade  # type: ignore[attr-defined]
    assert spec == CascadeSpec(fallback="big", target_accuracy=0.95, max_fallback_per_second=50, gate=True)
    assert fleet.models["big"].cascade is None  # type: ignore[attr-defined]


def test_max_deferral_defers_that_fraction_of_held_out_inputs() -> None:
    conf = np.random.default_rng(0).uniform(0.3, 1.0, 1000)
    for fraction in (0.0, 0.1, 0.3, 0.5):
        cut = deferral_threshold(conf, fraction)
        assert (conf < cut).mean() == pytest.approx(fraction, abs=1e-9)
    assert deferral_threshold(conf, 1.0) == float("inf")
    assert deferral_threshold(conf, 0.0) == 0.0  # nothing deferred, not even the least confident input


def test_target_accuracy_takes_the_lowest_threshold_whose_kept_inputs_reach_it() -> None:
    # ten inputs, most confident first: right, right, right, wrong, right, right, wrong, wrong, right, wrong
    conf = np.array([0.99, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    right = np.array([1, 1, 1, 0, 1, 1, 0, 0, 1, 0], dtype=bool)
    # kept accuracy at each cut: 1, 1, 1, .75, .8, .833, .714, .625, .667, .6
    assert accuracy_threshold(conf, right, 0.8) == 0.7  # keeps 6 of 10 at 5/6; lower cuts fall below 0.8
    assert accuracy_threshold(conf, right, 0.75) == 0.7
    assert accuracy_threshold(conf, right, 0.6) == 0.3  # everything kept
    assert accuracy_threshold(conf, right, 1.0) == 0.9
    assert accuracy_threshold(conf, ~right | True, 1.0) == 0.3
    assert accuracy_threshold(conf[[3]], right[[3]], 0.5) == float("inf")  # nothing reaches it: defer all
    # equal confidences are kept or deferred together
    tied = np.array([0.9, 0.8, 0.8, 0.8])
    assert accuracy_threshold(tied, np.array([1, 1, 0, 0], dtype=bool), 0.75) == 0.9


def test_the_threshold_follows_the_declared_target() -> None:
    conf = np.linspace(0.5, 1.0, 11)
    record = Calibration(1.0, conf, conf > 0.7)
    assert threshold(record, CascadeSpec(fallback="b", max_deferral=0.3)) == pytest.approx(0.65)
    assert threshold(record, CascadeSpec(fallback="b", target_accuracy=1.0)) == pytest.approx(0.75)


def test_temperature_scaling_softens_an_overconfident_model() -> None:
    rng = np.random.default_rng(1)
    n, k = 2000, 4
    truth = rng.integers(0, k, n)
    right = rng.uniform(size=n) < 0.7  # 70 % right, but each answer claims 0.97
    predicted = np.where(right, truth, (truth + 1) % k)
    proba = np.full((n, k), 0.01)
    proba[np.arange(n), predicted] = 0.97
    temperature = fit_temperature(proba, truth)
    assert temperature > 1.5
    assert confidence(proba, temperature).mean() == pytest.approx(0.7, abs=0.03)
    record = calibrate(proba, truth)
    assert record is not None and record.correct.mean() == pytest.approx(right.mean())
    assert np.all(np.diff(record.confidences) >= 0)
    again = Calibration.from_json(record.as_json())
    assert again.temperature == record.temperature and np.array_equal(again.correct, record.correct)
    assert calibrate(np.empty(0), np.empty(0, dtype=int)) is None
    # a label with no training row (only in the test set) is no column of the served model: it is left out
    padded = np.hstack([proba, np.zeros((n, 3))])
    assert calibrate(padded, truth).temperature == pytest.approx(temperature)  # type: ignore[union-attr]


def test_the_coverage_curve_defers_the_least_confident_first() -> None:
    conf = np.array([0.9, 0.2, 0.8, 0.4, 0.6, 0.3, 0.7, 0.5, 0.95, 0.1])
    small = conf > 0.45  # the small model is right exactly where it is sure
    fallback = np.ones(10, dtype=bool)
    curve = coverage_curve(conf, small, ~fallback, (0.0, 0.3, 1.0), (1.0, 10.0))
    assert curve == [
        {"deferred": 0.0, "accuracy": 0.6, "cost_per_million": 1.0},
        {"deferred": 0.3, "accuracy": 0.6, "cost_per_million": 4.0},
        {"deferred": 1.0, "accuracy": 0.0, "cost_per_million": 11.0},
    ]
    assert [p["accuracy"] for p in coverage_curve(conf, small, fallback, (0.0, 0.2, 0.4, 0.5), (0, 0))] == [
        0.6,
        0.8,
        1.0,
        1.0,
    ]
    chosen = at_threshold(conf, small, fallback, 0.45, (1.0, 10.0))
    assert chosen == {"threshold": 0.45, "deferred": 0.4, "accuracy": 1.0, "cost_per_million": 5.0}
    assert at_threshold(conf, small, fallback, float("inf"), (1.0, 10.0))["threshold"] is None


def _decision() -> Decision:
    return Decision(True, "promoted: significantly better; v2 vs v1", "accuracy", 0.05, [0.01, 0.09], 0.001, "mcnemar")


def test_the_gate_refuses_a_version_whose_cascade_loses_accuracy_significantly() -> None:
    truth = np.arange(400) % 4
    labels = ["a", "b", "c", "d"]
    old = truth.copy()
    worse = truth.copy()
    worse[:40] = (truth[:40] + 1) % 4  # the challenger's cascade gets 40 more inputs wrong
    drop = paired_test(truth, old, worse, labels, "accuracy", bootstrap=200, seed=0)
    refused = drop_verdict(_decision(), drop, "the cascade with big", 0.05)
    assert not refused.promote
    assert refused.reason.startswith("kept the champion: the cascade with big: accuracy Δ -0.1000")
    slightly = truth.copy()
    slightly[:2] = (truth[:2] + 1) % 4  # two inputs: not a significant drop
    kept = drop_verdict(
        _decision(),
        paired_test(truth, old, slightly, labels, "accuracy", bootstrap=200, seed=0),
        "the cascade with big",
        0.05,
    )
    assert kept.promote and "the cascade with big: accuracy Δ -0.0050" in kept.reason
    better = drop_verdict(
        _decision(),
        paired_test(truth, worse, old, labels, "accuracy", bootstrap=200, seed=0),
        "the cascade with big",
        0.05,
    )
    assert better.promote
