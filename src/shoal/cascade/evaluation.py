"""A model's cascade judged on its current test set with both production versions (`shoal eval`, the report)."""

from __future__ import annotations

from typing import Any

import numpy as np

from shoal.cascade.calibration import confidence
from shoal.cascade.combiner import load_route
from shoal.cascade.curve import FRACTIONS, at_threshold, coverage_curve
from shoal.cascade.spec import CascadeSpec, model_cascade
from shoal.data.assembled import assembled
from shoal.data.sets import TestSet
from shoal.registry import PRODUCTION, Version
from shoal.tasks import get_task
from shoal.workspace import Workspace


def current_test_set(ws: Workspace, name: str) -> TestSet | None:
    """The model's frozen test set as its data stands now, or None without test rows."""
    found, spec = assembled(ws, name), ws.model(name)
    if found is None or found.test.empty:
        return None
    return get_task(spec.task).test_set(found.train, found.test, spec)


def _outputs(ws: Workspace, version: Version, test: TestSet) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities in the version's label order, predicted indices in the test set's labels, -1 for a label
    the test set lacks)."""
    predictor = ws.load_predictor(version)
    proba = predictor.predict_proba(test.inputs)
    index = {label: i for i, label in enumerate(test.labels)}
    mapping = np.array([index.get(label, -1) for label in predictor.labels])
    return proba, mapping[proba.argmax(axis=1)]


def cascade_predictions(
    ws: Workspace, small: Version, fallback: np.ndarray, test: TestSet, cascade: CascadeSpec
) -> np.ndarray | None:
    """The cascade's predicted indices on `test`: `small`'s, except on the inputs below its threshold for the declared
    target, where the fallback's (`fallback`, its predicted indices) stand; None without a calibration record."""
    route = load_route(ws.registry.artifacts.open(small.artifact_uri, small.checksum), cascade)
    if route is None:
        return None
    proba, predicted = _outputs(ws, small, test)
    chosen = np.where(confidence(proba, route.temperature) < route.threshold, fallback, predicted)
    # a label the test set lacks (-1) is a wrong answer: another label than the truth, as the paired test counts
    return np.where(chosen < 0, (test.truth + 1) % len(test.labels), chosen)  # type: ignore[no-any-return]


def cascade_report(ws: Workspace, name: str) -> dict[str, Any] | None:
    """The coverage–accuracy curve of `name`'s cascade on its test set (deferring 0, 10, 20, 30, 50 and 100 % of the
    inputs, the least confident first), the cascade at its chosen threshold and each tier's $ per million; with
    `problem` set instead when it cannot be judged. None for a model without a cascade."""
    cascade = model_cascade(ws.model(name))
    if cascade is None:
        return None
    registry = ws.registry
    report: dict[str, Any] = {
        "model": name,
        "fallback": cascade.fallback_name,
        "target": cascade.model_dump(exclude_none=True),
    }
    if cascade.fallback_llm is not None:  # its answers cost money: `shoal eval` does not ask for them
        report["problem"] = f"the fallback is the LLM endpoint {cascade.fallback_llm.llm!r}: not judged on the test set"
        return report
    models = {"small": name, "fallback": cascade.fallback_name}
    numbers = {tier: registry.alias(model, PRODUCTION) for tier, model in models.items()}
    missing = [tier for tier, number in numbers.items() if number is None]
    test = current_test_set(ws, name)
    if missing or test is None:
        report["problem"] = f"no production version of the {' and '.join(missing)} model" if missing else "no test rows"
        return report
    small, fallback = (registry.version(models[tier], number) for tier, number in numbers.items() if number)
    route = load_route(registry.artifacts.open(small.artifact_uri, small.checksum), cascade)
    if route is None:
        report["problem"] = f"{name} v{small.number} has no calibration record (trained before cascades): retrain it"
        return report
    proba, small_predicted = _outputs(ws, small, test)
    small_right, fallback_right = small_predicted == test.truth, _outputs(ws, fallback, test)[1] == test.truth
    conf = confidence(proba, route.temperature)
    costs = (small.metrics.profile.cost_per_million, fallback.metrics.profile.cost_per_million)
    report.update(
        small_version=small.number,
        fallback_version=fallback.number,
        n_test=len(test.inputs),
        test_hash=test.hash,
        temperature=route.temperature,
        small_accuracy=float(small_right.mean()),
        fallback_accuracy=float(fallback_right.mean()),
        curve=coverage_curve(conf, small_right, fallback_right, FRACTIONS, costs),
        chosen=at_threshold(conf, small_right, fallback_right, route.threshold, costs),
        cost_per_million={"small": costs[0], "fallback": costs[1]},
    )
    return report
