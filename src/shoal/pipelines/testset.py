"""A pipeline's labelled test set: checked whole, registered as a content-hashed test drop, and found again.

The file (CSV, TSV, JSONL or Parquet) has a `text` column with the pipeline's input and one column per judged step,
named after the step, holding the label that step should answer; an empty cell is not judged (e.g. no intent for a
spam text). `shoal ingest --pipeline NAME FILE` stores it as the pipeline's newest test drop (refused whole, naming
the file, row and reason, with nothing stored); it is a test set, apart from every model's training data, so no
model is ever trained on it.

Which test set judges a pipeline (`pipeline_cases`): a file given on the command line, else the newest registered test
drop, else the fleet file's `test:` (read each time, so `shoal eval` never writes to the registry; every score names
the content hash of the rows it was judged on, whichever way they came).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from shoal.data.errors import DropRejected, Problem
from shoal.data.ingest import content_hash
from shoal.data.readers import LINE, read_table
from shoal.pipelines.spec import Pipeline, Step

if TYPE_CHECKING:
    from shoal.registry import PipelineDrop
    from shoal.workspace import Workspace

TEXT = "text"


@dataclass(frozen=True)
class PipelineCases:
    """A pipeline's test set: the inputs, each judged step's expected labels (None: not judged) and where they
    came from."""

    inputs: list[str]
    expected: dict[str, list[str | None]]
    source: str  # "test drop 1a2b3c4d5e6f (inbox.csv)", or the file read
    hash: str  # content hash of the rows

    def describe(self) -> dict[str, str | int]:
        return {"source": self.source, "hash": self.hash, "n": len(self.inputs)}


def no_test_set(name: str) -> str:
    return (
        f"pipeline {name!r} has no test set: register one with 'shoal ingest --pipeline {name} FILE' (a {TEXT!r} "
        f"column and one label column per judged step), or set pipelines.{name}.test"
    )


def checked_rows(frame: pd.DataFrame, source: str, pipeline: Pipeline, tasks: dict[str, str]) -> pd.DataFrame:
    """The test file's rows (`frame` as `read_table` gives it) as they are stored: the text and each judged step's
    label, None where not judged; raises DropRejected naming each bad column or line."""
    steps = {step.name: step for step in pipeline.steps}
    columns = [c for c in frame.columns if c != LINE]
    problems = []
    if TEXT not in columns:
        problems.append(Problem(None, f"no {TEXT!r} column (the pipeline's input); columns: {', '.join(columns)}"))
    for column in columns:
        if column == TEXT:
            continue
        if column not in steps:
            problems.append(Problem(None, f"column {column!r} is no step of the pipeline (steps: {', '.join(steps)})"))
        elif tasks[steps[column].model] != "text-classification":
            problems.append(Problem(None, f"column {column!r}: step {column!r} answers no label to judge"))
    if problems:
        raise DropRejected(source, problems)
    for column in columns:
        for line, value in zip(frame[LINE], frame[column], strict=True):
            if not (_missing(value) or isinstance(value, str)) or (column == TEXT and (_missing(value) or not value)):
                problems.append(
                    Problem(
                        int(line),
                        f"{column}: expected {'a text' if column == TEXT else 'a label or nothing'}, got {value!r}",
                    )
                )
    if problems:
        raise DropRejected(source, problems)
    ordered = [TEXT, *(c for c in columns if c != TEXT)]
    nothing = _nothing_judged(frame, ordered[1:], steps)
    if nothing is not None:
        raise DropRejected(source, [Problem(None, nothing)])
    return pd.DataFrame({c: pd.Series(_labels(frame[c]), dtype=object) for c in ordered})


def _nothing_judged(frame: pd.DataFrame, labels: list[str], steps: dict[str, Step]) -> str | None:
    """Why a test file judges nothing (no rows, no label column, every label cell empty), or None."""
    what = f"one label column per judged step, named after it (steps: {', '.join(steps)})"
    if not len(frame):
        return f"no rows: nothing to judge; give the inputs with {what}"
    if not labels:
        return f"no label column: nothing to judge; give {what}"
    if all(label is None for column in labels for label in _labels(frame[column])):
        return f"every label cell ({', '.join(labels)}) is empty: nothing to judge; give each input's expected labels"
    return None


def _missing(value: object) -> bool:
    """An empty cell as the readers and a stored drop give it: None, or pandas' missing value."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _labels(column: pd.Series) -> list[str | None]:
    return [None if _missing(value) or value == "" else value for value in column]


def _tasks(ws: Workspace, pipeline: Pipeline) -> dict[str, str]:
    return {model: ws.model(model).task for model in pipeline.models}


def _cases(rows: pd.DataFrame, source: str, digest: str | None = None) -> PipelineCases:
    expected = {c: _labels(rows[c]) for c in rows.columns if c != TEXT}
    return PipelineCases(list(rows[TEXT]), expected, source, digest or content_hash(rows))


def read_file(ws: Workspace, name: str, path: Path) -> PipelineCases:
    pipeline = ws.fleet.pipeline(name)
    rows = checked_rows(read_table(path), str(path), pipeline, _tasks(ws, pipeline))
    return _cases(rows, str(path))


def ingest_pipeline_test(ws: Workspace, name: str, path: Path) -> tuple[PipelineDrop, bool]:
    """Check a pipeline test file whole and store it as the pipeline's newest test drop; returns (drop, created)."""
    pipeline = ws.fleet.pipeline(name)  # an unknown pipeline fails before the file is read or the registry opened
    rows = checked_rows(read_table(path, source=path.name), path.name, pipeline, _tasks(ws, pipeline))
    return ws.registry.add_pipeline_drop(name, rows, content_hash=content_hash(rows), source=path.name)


def _registered(ws: Workspace, name: str, pipeline: Pipeline) -> PipelineCases | None:
    drop = ws.registry.pipeline_drop(name)
    if drop is None:
        return None
    source = f"test drop {drop.hash[:12]} ({drop.source})"
    stored = ws.registry.load_pipeline_drop(drop)
    # checked again: the pipeline's steps may have changed since the drop was registered
    rows = checked_rows(stored.assign(**{LINE: range(1, len(stored) + 1)}), source, pipeline, _tasks(ws, pipeline))
    return _cases(rows, source, drop.hash)


def pipeline_cases(ws: Workspace, name: str, path: Path | None = None) -> PipelineCases | None:
    """The test set that judges pipeline `name`: `path`, else its newest test drop, else its `test:` file; None
    when it has none."""
    pipeline = ws.fleet.pipeline(name)
    if path is not None:
        return read_file(ws, name, path)
    registered = _registered(ws, name, pipeline)
    if registered is not None:
        return registered
    return read_file(ws, name, ws.root / pipeline.test) if pipeline.test is not None else None
