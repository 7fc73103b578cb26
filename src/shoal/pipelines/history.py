"""Did improving a component improve the system? Each time a model changes production version (the gate's
promotion, `shoal promote`, `shoal rollback`), every pipeline with that model is judged again end to end on its test
set with the new production versions, and the score is recorded beside the change (`shoal history --pipeline`).

A pipeline without a test set records nothing. Recording never fails or holds up the change it follows: a pipeline
that cannot be judged (a model without a production version, a test drop that no longer fits the steps, a model
that fails to load) is recorded with its error, and the log says which pipeline, without any text.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.workspace import Workspace

log = logging.getLogger("shoal.pipelines")


def record_change(
    ws: Workspace, model: str, from_version: int | None, to_version: int, *, actor: str, gain: dict[str, Any] | None
) -> None:
    """Record each pipeline with `model` judged at the production versions after `model` went from `from_version`
    to `to_version` (`gain`: the model's own paired test on its test set as the gate recorded it; None when no gate
    judged the change). Never raises."""
    for name, pipeline in ws.fleet.pipelines.items():
        if model not in pipeline.models:
            continue
        try:
            _record(ws, name, model, from_version, to_version, actor=actor, gain=gain)
        except Exception as error:  # even recording the error failed (the store is down): the log keeps it
            log.warning(
                "pipeline %s: score after %s v%s not recorded (%s)", name, model, to_version, type(error).__name__
            )


def _record(
    ws: Workspace,
    name: str,
    model: str,
    from_version: int | None,
    to_version: int,
    *,
    actor: str,
    gain: dict[str, Any] | None,
) -> None:
    from shoal.pipelines.evaluate import production_versions, report
    from shoal.pipelines.testset import pipeline_cases

    record: dict[str, Any] = {"gain": gain}
    try:
        cases = pipeline_cases(ws, name)
        if cases is None:
            return
        record["test_set"] = cases.describe()
        judged = report(ws, name, cases, production_versions(ws, ws.fleet.pipeline(name)))
        record.update({key: value for key, value in judged.items() if key != "pipeline"})
    except Exception as error:  # recorded as such: the change it follows stands
        log.warning("pipeline %s: not judged after %s v%s (%s)", name, model, to_version, type(error).__name__)
        record["error"] = f"{type(error).__name__}: {error}"
    ws.registry.record_pipeline_score(name, model, from_version, to_version, actor=actor, record=record)
