"""Ingest a data drop: read, validate, split and store it, whole or not at all.

The one way data enters the store: `ingest_frame` validates and stores rows; `ingest_file` (the CLI, the worker's
inbox), `ingest_rows` (the server's `POST /v1/models/{name}/data`) and feedback (`shoal.data.feedback`) read
their rows and call it. Every refusal is a `DropRejected` naming the source, row and reason, raised before anything
is written: a rejected drop leaves the store byte for byte as it was (no event either — the entry point shows the
refusal: the CLI's error, the HTTP 422 body, the inbox's `rejected/` folder and log line). The task's validation
is the one place a value is checked (`shoal.tasks.columns`: declared types, valid UTF-8).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from shoal.data.readers import read_table, records_frame
from shoal.data.split_mode import SplitMode
from shoal.registry import Drop
from shoal.registry.database import database_exists
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


@dataclass
class Prepared:
    """A validated drop, ready to store: nothing has been written yet."""

    model: str
    task: str
    rows: pd.DataFrame  # canonical rows with their `split`
    source: str
    split: SplitMode
    warnings: list[str]
    skipped: list[str]


def prepare_frame(
    ws: Workspace,
    model: str,
    frame: pd.DataFrame,
    stored: pd.DataFrame | None,
    *,
    source: str,
    split: SplitMode = "auto",
    skip_invalid: bool = False,
) -> Prepared:
    """Validate a drop's raw rows against the model's task and its stored rows (`stored_rows`); raises
    DropRejected. Reads nothing but its arguments and the fleet file, writes nothing."""
    spec = ws.model(model)
    task = get_task(spec.task)
    validated = task.validate(frame, spec, source, skip_invalid=skip_invalid, stored=stored)
    rows = validated.frame
    rows["split"] = task.assign_split(rows, split, spec.split.test_fraction)
    warnings = list(validated.warnings)
    if validated.skipped:
        warnings.append(f"{len(validated.skipped)} invalid row(s) left out")
    warnings += _cross_split_duplicates(stored, rows, task)
    return Prepared(model, spec.task, rows, source, split, warnings, validated.skipped)


def prepare_file(
    ws: Workspace,
    model: str,
    path: Path,
    *,
    stored: pd.DataFrame | None,
    split: SplitMode = "auto",
    skip_invalid: bool = False,
) -> Prepared:
    """Read and validate a file (see `prepare_frame`): what can go wrong here is the file's, never the store's."""
    frame = read_table(path, source=path.name)
    return prepare_frame(ws, model, frame, stored, source=path.name, split=split, skip_invalid=skip_invalid)


def store(ws: Workspace, prepared: Prepared, provenance: dict[str, Any] | None = None) -> IngestResult:
    """Store a prepared drop (content-addressed: the same rows again change nothing), with the `provenance` of
    labels no human gave (`Drop.provenance`)."""
    rows = prepared.rows
    drop, created = ws.registry.add_drop(
        prepared.model,
        prepared.task,
        rows,
        content_hash=content_hash(rows),
        source=prepared.source,
        split=prepared.split,
        warnings=prepared.warnings,
        provenance=provenance,
    )
    return IngestResult(drop, created, prepared.warnings, prepared.skipped)


def ingest_frame(
    ws: Workspace,
    model: str,
    frame: pd.DataFrame,
    *,
    source: str,
    split: SplitMode = "auto",
    skip_invalid: bool = False,
    provenance: dict[str, Any] | None = None,
) -> IngestResult:
    """Validate and store rows, whole or not at all (with the `provenance` of labels no human gave)."""
    prepared = prepare_frame(
        ws, model, frame, stored_rows(ws, model), source=source, split=split, skip_invalid=skip_invalid
    )
    return store(ws, prepared, provenance)


def ingest_file(
    ws: Workspace, model: str, path: Path, *, split: SplitMode = "auto", skip_invalid: bool = False
) -> IngestResult:
    ws.model(model)  # an unknown model fails before the file is read or the registry opened
    stored = stored_rows(ws, model)
    return store(ws, prepare_file(ws, model, path, stored=stored, split=split, skip_invalid=skip_invalid))


def ingest_rows(ws: Workspace, model: str, rows: list[dict[str, Any]], *, split: SplitMode = "auto") -> IngestResult:
    """Rows sent over HTTP (source "http"; a problem's line is the 1-based position of its row)."""
    frame = records_frame(rows, list(range(1, len(rows) + 1)), "http")
    return ingest_frame(ws, model, frame, source="http", split=split)


def stored_rows(ws: Workspace, model: str) -> pd.DataFrame | None:
    """Every row of the model's drops so far (None before its first drop). A registry not created yet is not
    created here: a drop refused into an empty workspace leaves it empty."""
    if "registry" not in ws.__dict__ and not database_exists(ws.registry_url):
        return None
    registry = ws.registry
    drops = registry.drops(model) if model in registry.model_names() else []
    return registry.load_drops(drops) if drops else None


def _cross_split_duplicates(stored: pd.DataFrame | None, rows: pd.DataFrame, task: TaskKind) -> list[str]:
    frame = pd.concat([stored, rows], ignore_index=True) if stored is not None else rows
    keys = task.split_keys(frame)
    both = len(set(keys[frame["split"] == "train"]) & set(keys[frame["split"] == "test"]))
    return [f"{both} text(s) appear in both train and test (they are left out of training)"] if both else []
