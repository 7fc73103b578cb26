"""A model's data as its task assembles it from every stored drop: where training and the evaluations that judge
a model on its current test set (the cascade's) start, so they always see the same rows.

Labels no human gave are never test data next to human ones. Such a drop carries its provenance (`Drop.provenance`:
its kind — `teacher` for `shoal label`, `synth` for `shoal synth`, `llm-answers` for a cold start's logged LLM
answers (`shoal.coldstart`) — the teacher, the prompt's hash...); a drop without one is human-labelled. Every drop is
split like any other; then, when the test set holds rows whose latest label a person gave (an ingested file,
feedback), it is those rows only — the gold test set — and the other test rows join training. When it holds none,
the teacher's (or the LLM's) labels are the test set, and `judged_by` and the notes say so: quality is then
measured against the teacher (`teacher_judged`, also what `shoal eval` and the report show).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from shoal.registry import Drop
from shoal.registry.records import LLM_ANSWERS
from shoal.tasks import get_task
from shoal.workspace import Workspace

NO_HUMAN_TEST = "no human-labelled test rows: quality is measured against "


@dataclass(frozen=True)
class Assembled:
    dataset_version: str  # the set of drops the rows came from
    train: pd.DataFrame
    test: pd.DataFrame
    notes: list[str]  # what the assembly did to the rows (relabelled, merged, left out)
    #: None: the test labels are people's; else whose they are (no human-labelled test row exists)
    judged_by: str | None = None


def labelled_by_llm_answers(drop: Drop) -> bool:
    """Whether `drop` holds a cold start's logged LLM answers."""
    return drop.provenance is not None and drop.provenance.get("kind") == LLM_ANSWERS


def assembled(ws: Workspace, name: str, dataset_version: str | None = None) -> Assembled | None:
    """Model `name`'s training and test rows from all of its drops, or from the drops that made `dataset_version`
    (the drops a version was trained on: drops are only ever added, so they are the oldest ones whose hash is that
    version's); None before its first drop or when no set of its drops has that hash."""
    spec, registry = ws.model(name), ws.registry
    drops = model_drops(ws, name, dataset_version)
    if not drops:
        return None
    frames = [registry.load_drops([drop]) for drop in drops]
    task = get_task(spec.task)
    train, test, notes = task.assemble(pd.concat(frames, ignore_index=True), spec)
    judged_by = None
    if any(drop.provenance is not None for drop in drops):
        train, test, judged_by = _gold_test(task.split_keys, drops, frames, train, test, notes)
    return Assembled(registry.dataset_version(name, drops), train, test, notes, judged_by)


def _gold_test(
    split_keys: Callable[[pd.DataFrame], pd.Series],
    drops: list[Drop],
    frames: list[pd.DataFrame],
    train: pd.DataFrame,
    test: pd.DataFrame,
    notes: list[str],
) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    """(train, test, judged_by): with human-labelled test rows, the test rows whose latest label no human gave moved
    to training; without, the test as it is, judged by the teacher (`notes` says which)."""
    judge = judged_against(drops)
    if judge is not None:
        if test.empty:
            return train, test, None
        notes.append(f"{NO_HUMAN_TEST}{judge}")
        return train, test, judge
    by_teacher: dict[str, bool] = {}  # each key's latest label: no human's?
    for drop, frame in zip(drops, frames, strict=True):
        for key in split_keys(frame):
            by_teacher[key] = drop.provenance is not None
    moved = split_keys(test).map(lambda key: by_teacher.get(key, False)).astype(bool).to_numpy()
    if not moved.any():
        return train, test, None
    notes.append(
        f"{int(moved.sum())} test rows labelled by an LLM or a teacher moved to training: the test set is the "
        f"{int((~moved).sum())} human-labelled rows"
    )
    return pd.concat([train, test[moved]], ignore_index=True), test[~moved].reset_index(drop=True), None


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
    return any(drop.n_test and drop.provenance is None for drop in drops)


def judged_against(drops: list[Drop]) -> str | None:
    """Whose labels the test rows of `drops` are when no drop has human-labelled ones (a teacher's, a cold start's
    LLM's), else None."""
    teachers = sorted({teacher(d) for d in drops if d.provenance is not None and d.n_test})
    if not teachers or human_test_rows(drops):
        return None
    return f"the teacher's labels ({', '.join(teachers)})"


def teacher_judged(drops: list[Drop]) -> str | None:
    """The note saying that quality is measured against a teacher (`judged_against`), else None: what `shoal train`,
    `shoal eval` and the report show beside the scores."""
    judge = judged_against(drops)
    return None if judge is None else f"{NO_HUMAN_TEST}{judge}"


def teacher(drop: Drop) -> str:
    """Who labelled a drop no human labelled, as the notes name it."""
    assert drop.provenance is not None
    name = str(drop.provenance.get("teacher"))
    return f"the cold start's LLM answers, {name}" if labelled_by_llm_answers(drop) else name
