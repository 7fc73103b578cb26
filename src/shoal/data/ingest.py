"""Ingest a data drop: read, validate, split and store it, whole or not at all.

The CLI, the server's data endpoint and the worker's inbox all call `ingest_frame`/`ingest_file`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from shoal.data.readers import read_table
from shoal.data.split import assign_split
from shoal.registry import Drop
from shoal.tasks import TaskKind, get_task
from shoal.workspace import Workspace

SplitMode = Literal["train", "test", "auto"]


@dataclass
class IngestResult:
    drop: Drop
    created: bool
    warnings: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def content_hash(frame: pd.DataFrame) -> str:
    """Address of a drop: its canonical rows and their splits, not the bytes of the file they came in."""
    payload = frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
    return hashlib.sha256(payload).hexdigest()


def ingest_frame(
    ws: Workspace,
    model: str,
    frame: pd.DataFrame,
    *,
    source: str,
    split: SplitMode = "auto",
    skip_invalid: bool = False,
) -> IngestResult:
    spec = ws.model(model)
    task = get_task(spec.task)
    validated = task.validate(frame, spec, source, skip_invalid=skip_invalid)
    rows = validated.frame
    rows["split"] = assign_split(task.split_keys(rows), split, spec.split.test_fraction)
    warnings = list(validated.warnings)
    if validated.skipped:
        warnings.append(f"{len(validated.skipped)} invalid row(s) left out (--skip-invalid)")
    warnings += _cross_split_duplicates(ws, model, rows, task)
    drop, created = ws.registry.add_drop(
        model, spec.task, rows, content_hash=content_hash(rows), source=source, split=split, warnings=warnings
    )
    return IngestResult(drop, created, warnings, validated.skipped)


def ingest_file(
    ws: Workspace, model: str, path: Path, *, split: SplitMode = "auto", skip_invalid: bool = False
) -> IngestResult:
    ws.model(model)  # an unknown model fails before the file is read
    return ingest_frame(
        ws, model, read_table(path, source=path.name), source=path.name, split=split, skip_invalid=skip_invalid
    )


def _cross_split_duplicates(ws: Workspace, model: str, rows: pd.DataFrame, task: TaskKind) -> list[str]:
    registry = ws.registry
    frame = pd.concat([registry.load_drops(registry.drops(model)), rows], ignore_index=True)
    keys = task.split_keys(frame)
    both = len(set(keys[frame["split"] == "train"]) & set(keys[frame["split"] == "test"]))
    return [f"{both} text(s) appear in both train and test (they are left out of training)"] if both else []
