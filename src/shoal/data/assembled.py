"""A model's data as its task assembles it from every stored drop: where training and the evaluations that judge
a model on its current test set (the cascade's) start, so they always see the same rows.

Labels no human gave are never test data next to human ones. Two kinds exist (to be folded into one):

- a teacher's (`shoal label`, `shoal synth`; `Drop.provenance`): a teacher drop is stored as training rows when the
  model has human-labelled test rows, and one stored with test rows (its model had none then) gives them to training
  as soon as a human-labelled drop brings test rows; until then the model is judged against the teacher's labels,
  and the assembly's notes say so;
- a cold start's LLM answers (`shoal.coldstart`; the drop's source starts with `LLM_ANSWERS`), split like any drop:
  when the test set holds rows with human labels (feedback, an ingested file), it is those rows only — the gold test
  set — and the LLM-labelled test rows join training; when it holds none, the LLM's answers are the test set and
  `judged_by` says so: quality is then measured against the LLM.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from shoal.registry import Drop
from shoal.tasks import get_task
from shoal.workspace import Workspace

#: how the source of a drop of an LLM's answers begins
LLM_ANSWERS = "llm-answers"


@dataclass(frozen=True)
class Assembled:
    dataset_version: str  # the set of drops the rows came from
    train: pd.DataFrame
    test: pd.DataFrame
    notes: list[str]  # what the assembly did to the rows (relabelled, merged, left out)
    #: None: the test labels are people's; else whose they are (no human-labelled test row exists)
    judged_by: str | None = None


def labelled_by_llm(drop: Drop) -> bool:
    return drop.source.startswith(LLM_ANSWERS)


def assembled(ws: Workspace, name: str, dataset_version: str | None = None) -> Assembled | None:
    """Model `name`'s training and test rows from all of its drops, or from the drops that made `dataset_version`
    (the drops a version was trained on: drops are only ever added, so they are the oldest ones whose hash is that
    version's); None before its first drop or when no set of its drops has that hash."""
    spec, registry = ws.model(name), ws.registry
    drops = model_drops(ws, name, dataset_version)
    if not drops:
        return None
    frames = [registry.load_drops([drop]) for drop in drops]
    if human_test_rows(drops):  # a teacher's test rows (stored before there were human ones) train
        frames = [f.assign(split="train") if d.provenance else f for d, f in zip(drops, frames, strict=True)]
    task = get_task(spec.task)
    train, test, notes = task.assemble(pd.concat(frames, ignore_index=True), spec)
    judged_by = None
    if any(labelled_by_llm(drop) for drop in drops):
        train, test, judged_by = _gold_test(ws, drops, train, test, notes)
    judge = teacher_judged(drops)
    if judge is not None and not test.empty:
        notes.append(judge)
    return Assembled(registry.dataset_version(name, drops), train, test, notes, judged_by)


def _gold_test(
    ws: Workspace, drops: list[Drop], train: pd.DataFrame, test: pd.DataFrame, notes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    """(train, test, judged_by) with the test rows whose latest label is an LLM's moved to training when any test
    row has a person's label; else the test as it is, judged by the LLM (`notes` says which)."""
    task = get_task(ws.model(drops[0].model).task)
    by_llm: dict[str, bool] = {}  # each key's latest label: an LLM's (or a teacher's: no human gave it either)?
    for drop in drops:
        for key in task.split_keys(ws.registry.load_drops([drop])):
            by_llm[key] = labelled_by_llm(drop) or drop.provenance is not None
    llm_rows = task.split_keys(test).map(lambda key: by_llm.get(key, False)).astype(bool)
    if not llm_rows.any():
        return train, test, None
    if llm_rows.all():
        notes.append(
            f"no human-labelled test rows: quality is measured against the LLM's answers ({len(test)} test rows)"
        )
        return train, test, "the LLM's answers (no human-labelled test rows)"
    notes.append(
        f"{int(llm_rows.sum())} test rows labelled by the LLM or a teacher moved to training: the test set is the "
        f"{int((~llm_rows).sum())} human-labelled rows"
    )
    moved = pd.concat([train, test[llm_rows.to_numpy()]], ignore_index=True)
    return moved, test[~llm_rows.to_numpy()].reset_index(drop=True), None


def model_drops(ws: Workspace, name: str, dataset_version: str | None = None) -> list[Drop]:
    """Model `name`'s drops, or those that made `dataset_version` (empty when none did)."""
    registry = ws.registry
    drops = registry.drops(name) if name in registry.model_names() else []
    if dataset_version is None:
        return drops
    return next(
        (drops[:k] for k in range(len(drops), 0, -1) if registry.dataset_version(name, drops[:k]) == dataset_version),
        [],
    )


def human_test_rows(drops: list[Drop]) -> bool:
    """Whether any of `drops` holds test rows a human labelled (a drop without provenance)."""
    return any(drop.n_test and drop.provenance is None and not labelled_by_llm(drop) for drop in drops)


def teacher_judged(drops: list[Drop]) -> str | None:
    """The note saying that the test rows of `drops` are a teacher's (no drop has human-labelled ones), else None:
    what `shoal train`, `shoal eval` and the report show beside the scores."""
    teachers = sorted({str(d.provenance.get("teacher")) for d in drops if d.provenance is not None and d.n_test})
    if not teachers or human_test_rows(drops):
        return None
    return f"no human-labelled test rows: quality is measured against the teacher's labels ({', '.join(teachers)})"
