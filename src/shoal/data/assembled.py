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
    drops = registry.drops(name) if name in registry.model_names() else []
    if dataset_version is not None:
        drops = next(
            (
                drops[:k]
                for k in range(len(drops), 0, -1)
                if registry.dataset_version(name, drops[:k]) == dataset_version
            ),
            [],
        )
    if not drops:
        return None
    frames, judge = teacher_test_rows(drops, [registry.load_drops([drop]) for drop in drops])
    train, test, notes = get_task(spec.task).assemble(pd.concat(frames, ignore_index=True), spec)
    if judge is not None and not test.empty:
        notes.append(judge)
    return Assembled(registry.dataset_version(name, drops), train, test, notes)


def human_test_rows(drops: list[Drop]) -> bool:
    """Whether any of `drops` holds test rows a human labelled (a drop without provenance)."""
    return any(drop.n_test and drop.provenance is None for drop in drops)


def teacher_test_rows(drops: list[Drop], frames: list[pd.DataFrame]) -> tuple[list[pd.DataFrame], str | None]:
    """Each drop's rows with the test rows of teacher-labelled drops moved to training once a human-labelled drop has
    test rows (the test set stays human-labelled); else, when the test rows are a teacher's, the note saying so."""
    teachers = sorted({str(d.provenance.get("teacher")) for d in drops if d.provenance is not None and d.n_test})
    if not teachers:
        return frames, None
    if not human_test_rows(drops):
        return frames, (
            f"no human-labelled test rows: quality is measured against the teacher's labels ({', '.join(teachers)})"
        )
    moved = [
        frame.assign(split="train") if drop.provenance is not None else frame
        for drop, frame in zip(drops, frames, strict=True)
    ]
    return moved, None
