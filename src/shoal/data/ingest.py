"""Ingest a data drop: read, validate, split and store it, whole or not at all.

The one way data enters the store: `ingest_frame` validates and stores rows; `ingest_file` (the CLI, the worker's
inbox), `ingest_rows` (the server's `POST /v1/models/{name}/data`) and feedback (`shoal.data.feedback`) read
their rows and call it. Every refusal is a `DropRejected` naming the source, row and reason.
`record_rejected` notes a refusal in the model's history for sources no one watches (the inbox, feedback).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from shoal.data.readers import LINE, read_table
from shoal.data.split_mode import SplitMode
from shoal.registry import Drop, RegistryError
from shoal.tasks import get_task
from shoal.tasks.base import TaskKind
from shoal.workspace import Workspace


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
    stored = stored_rows(ws, model)
    validated = task.validate(frame, spec, source, skip_invalid=skip_invalid, stored=stored)
    rows = validated.frame
    rows["split"] = task.assign_split(rows, split, spec.split.test_fraction)
    warnings = list(validated.warnings)
    if validated.skipped:
        warnings.append(f"{len(validated.skipped)} invalid row(s) left out (--skip-invalid)")
    warnings += _cross_split_duplicates(stored, rows, task)
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


def ingest_rows(ws: Workspace, model: str, rows: list[dict[str, Any]], *, split: SplitMode = "auto") -> IngestResult:
    """Rows sent over HTTP (source "http"; a problem's line is the 1-based position of its row)."""
    frame = pd.DataFrame(rows)
    frame[LINE] = range(1, len(frame) + 1)
    return ingest_frame(ws, model, frame, source="http", split=split)


def record_rejected(ws: Workspace, model: str, message: str, payload: dict[str, Any] | None = None) -> None:
    """A `drop_rejected` event in the model's history (a model with no data yet has none; the log line stays)."""
    with contextlib.suppress(RegistryError):
        ws.registry.record_event(model, "drop_rejected", message, payload=payload)


def stored_rows(ws: Workspace, model: str) -> pd.DataFrame | None:
    """Every row of the model's drops so far (None before its first drop)."""
    registry = ws.registry
    drops = registry.drops(model) if model in registry.model_names() else []
    return registry.load_drops(drops) if drops else None


def _cross_split_duplicates(stored: pd.DataFrame | None, rows: pd.DataFrame, task: TaskKind) -> list[str]:
    frame = pd.concat([stored, rows], ignore_index=True) if stored is not None else rows
    keys = task.split_keys(frame)
    both = len(set(keys[frame["split"] == "train"]) & set(keys[frame["split"] == "test"]))
    return [f"{both} text(s) appear in both train and test (they are left out of training)"] if both else []
