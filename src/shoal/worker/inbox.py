"""A model's inbox folder: files dropped there are ingested once their size is stable, then moved aside.

`inbox/<model>/x.csv` becomes a data drop and moves to `processed/`; a file the validation refuses moves to
`rejected/` beside `x.csv.error.txt` (file, line, reason) and changes nothing else. Two workers watching the
same inbox are harmless: ingestion is content-addressed, so the second one finds the drop already stored.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from shoal.data.errors import DropRejected
from shoal.data.ingest import ingest_file, record_rejected
from shoal.worker.logs import emit
from shoal.workspace import Workspace

SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")
PROCESSED, REJECTED = "processed", "rejected"


@dataclass(frozen=True)
class Seen:
    size: int
    mtime_ns: int
    since: float  # monotonic time this size and mtime were first seen


class Inbox:
    """Watches every model's inbox; a file is read once its size and mtime held still for `settle_seconds`."""

    def __init__(self, ws: Workspace, settle_seconds: float = 1.0) -> None:
        self.ws = ws
        self.settle_seconds = settle_seconds
        self._seen: dict[Path, Seen] = {}

    def candidates(self, model: str) -> list[Path]:
        folder = self.ws.inbox(model)
        if not folder.is_dir():
            return []
        return sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")
        )

    def ready(self, model: str) -> list[Path]:
        """Files whose size and mtime have not changed for `settle_seconds` (a copy still being written has)."""
        stable = []
        clock = time.monotonic()
        present = set()
        for path in self.candidates(model):
            try:
                stat = path.stat()
            except FileNotFoundError:  # another worker moved it away
                continue
            present.add(path)
            seen = self._seen.get(path)
            if seen is None or (seen.size, seen.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
                self._seen[path] = Seen(stat.st_size, stat.st_mtime_ns, clock)
            elif clock - seen.since >= self.settle_seconds:
                stable.append(path)
        folder = self.ws.inbox(model)
        for path in [p for p in self._seen if p.parent == folder and p not in present]:
            del self._seen[path]
        return stable

    def process(self, model: str) -> int:
        """Ingest every stable file of `model`'s inbox; returns how many files were handled."""
        handled = 0
        for path in self.ready(model):
            if self._ingest(model, path):
                self._seen.pop(path, None)
                handled += 1
        return handled

    def _ingest(self, model: str, path: Path) -> bool:
        try:
            result = ingest_file(self.ws, model, path)
        except DropRejected as error:
            self._reject(model, path, error)
            return True
        except FileNotFoundError:  # another worker took it first
            return True
        except Exception as error:  # not the file's fault (database busy, disk full): keep it and retry
            emit("inbox_error", 40, model=model, file=path.name, error=f"{type(error).__name__}: {error}")
            return False
        drop = result.drop
        _move(path, path.parent / PROCESSED)
        emit(
            "inbox_ingested",
            model=model,
            file=path.name,
            drop=drop.hash[:12],
            rows=drop.n_rows,
            created=result.created,
            warnings=len(result.warnings),
        )
        return True

    def _reject(self, model: str, path: Path, error: DropRejected) -> None:
        folder = path.parent / REJECTED
        moved = _move(path, folder)
        if moved is None:
            return
        moved.with_name(moved.name + ".error.txt").write_text(str(error) + "\n", encoding="utf-8")
        first = error.problems[0] if error.problems else None
        emit("inbox_rejected", 30, model=model, file=path.name, problem=str(first) if first else "", moved_to=moved)
        record_rejected(
            self.ws,
            model,
            f"{path.name} rejected: {first}; moved to {folder}",
            {"file": path.name, "problems": [str(p) for p in error.problems[:20]]},
        )


def _move(path: Path, folder: Path) -> Path | None:
    """Move `path` into `folder` without overwriting an earlier file of the same name; None if it is gone."""
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    if target.exists():
        target = folder / f"{path.stem}.{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}{path.suffix}"
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return None
    return target
