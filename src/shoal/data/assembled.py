"""A model's data as its task assembles it from every stored drop: where training and the evaluations that judge
a model on its current test set (the cascade's) start, so they always see the same rows.

Labels no human gave (a teacher's, `Drop.provenance`) are never test data next to human ones: a teacher drop is
stored as training rows when the model has human-labelled test rows, and one stored with test rows (its model had
none then) gives them to training as soon as a human-labelled drop brings test rows. Until then the model is judged
against the teacher's labels, and the assembly's notes say so."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from shoal.registry import Drop
from shoal.tasks import get_task
from shoal.workspace import Workspace


@dataclass(frozen=True)
class Assembled:
    dataset_version: str  # the set of drops the rows came from
    train: pd.DataFrame
    test: pd.DataFrame
    notes: list[str]  # what the assembly did to the rows (relabelled, merged, left out)


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
    train, test, notes = get_task(spec.task).assemble(pd.concat(frames, ignore_index=True), spec)
    judge = teacher_judged(drops)
    if judge is not None and not test.empty:
        notes.append(judge)
    return Assembled(registry.dataset_version(name, drops), train, test, notes)


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


def teacher_judged(drops: list[Drop]) -> str | None:
    """The note saying that the test rows of `drops` are a teacher's (no drop has human-labelled ones), else None:
    what `shoal train`, `shoal eval` and the report show beside the scores."""
    teachers = sorted({str(d.provenance.get("teacher")) for d in drops if d.provenance is not None and d.n_test})
    if not teachers or human_test_rows(drops):
        return None
    return f"no human-labelled test rows: quality is measured against the teacher's labels ({', '.join(teachers)})"
