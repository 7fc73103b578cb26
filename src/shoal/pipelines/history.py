"""Did improving a component improve the system? Each time a model changes production version (the gate's
promotion, `shoal promote`, `shoal rollback`), every pipeline with that model is judged end to end on its test set
with the versions production will have after the change, and the score is recorded beside the change
(`shoal history --pipeline`).

The scores are judged BEFORE the alias moves and written in the alias change's own transaction
(`Registry.set_alias(pipeline_scores=...)`): a change never stands without its scores, and a process killed while
judging has changed nothing. A pipeline without a test set, or with another model that has no production version
yet, records nothing. Judging never fails or holds up the change: a pipeline that cannot be judged (a test drop that
no longer fits the steps, a model that fails to load) is recorded with its error, and the log says which pipeline,
without any text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.pipelines.run import Outcome
    from shoal.pipelines.testset import PipelineCases
    from shoal.workspace import Workspace

log = logging.getLogger("shoal.pipelines")


@dataclass(frozen=True)
class Judged:
    """A pipeline already run on its test set at `versions` (the gate's challenger run), so it is not run twice."""

    cases: PipelineCases
    versions: dict[str, int]
    outcomes: list[Outcome]


def scores_after(
    ws: Workspace, model: str, to_version: int, *, gain: dict[str, Any] | None, judged: dict[str, Judged] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Each pipeline with `model` judged at the production versions with `model` at `to_version`, as (pipeline,
    record) for `Registry.set_alias` (`gain`: the model's own paired test as the gate recorded it for this version;
    None when no gate judged it). Never raises."""
    from shoal.registry import PRODUCTION

    scores: list[tuple[str, dict[str, Any]]] = []
    for name, pipeline in ws.fleet.pipelines.items():
        if model not in pipeline.models:
            continue
        try:
            others = {other: ws.registry.alias(other, PRODUCTION) for other in pipeline.models if other != model}
            if any(number is None for number in others.values()):
                continue  # the pipeline is not whole yet: nothing to judge
            versions = {m: to_version if m == model else others[m] for m in pipeline.models}
            record = _record(ws, name, model, to_version, versions, gain, (judged or {}).get(name))
        except Exception as error:  # the store is down: the change goes ahead, the log keeps it
            log.warning(
                "pipeline %s: score after %s v%s not judged (%s)", name, model, to_version, type(error).__name__
            )
            continue
        if record is not None:
            scores.append((name, record))
    return scores


def promote_by_hand(ws: Workspace, model: str, version: int, *, reason: str) -> int | None:
    """Put `version` in production as a person's decision (`shoal promote`, `POST /v1/models/{name}/promote`),
    with the score of each pipeline judged with it; returns the version it replaced (None: there was none)."""
    ws.registry.version(model, version)  # an unknown version fails before any pipeline is judged with it
    scores = scores_after(ws, model, version, gain=None)
    return ws.registry.set_alias(model, version, actor="manual", reason=reason, pipeline_scores=scores)


def roll_back(ws: Workspace, model: str) -> int:
    """Put the previous production version back (`shoal rollback`, `POST /v1/models/{name}/rollback`), with the
    score of each pipeline judged with it; returns that version."""
    return ws.registry.rollback(model, pipeline_scores=lambda previous: scores_after(ws, model, previous, gain=None))


def _record(
    ws: Workspace,
    name: str,
    model: str,
    to_version: int,
    versions: dict[str, int],
    gain: dict[str, Any] | None,
    judged: Judged | None,
) -> dict[str, Any] | None:
    from shoal.pipelines.evaluate import report
    from shoal.pipelines.testset import pipeline_cases

    record: dict[str, Any] = {"gain": gain}
    try:
        reuse = judged if judged is not None and judged.versions == versions else None
        cases = reuse.cases if reuse is not None else pipeline_cases(ws, name)
        if cases is None:
            return None
        record["test_set"] = cases.describe()
        judged_report = report(ws, name, cases, versions, reuse.outcomes if reuse is not None else None)
        record.update({key: value for key, value in judged_report.items() if key != "pipeline"})
    except Exception as error:  # recorded as such: the change it follows stands
        log.warning("pipeline %s: not judged after %s v%s (%s)", name, model, to_version, type(error).__name__)
        record["error"] = f"{type(error).__name__}: {error}"
    return record
