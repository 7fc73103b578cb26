"""A model's inbox folder: files dropped there are ingested once their size is stable, then moved aside.

`inbox/<model>/x.csv` becomes a data drop and moves to `processed/`. A file refused by reading or validation is
refused for good — that is a property of the file, and another try would refuse it again — so it moves to
`rejected/` beside `x.csv.error.txt` (file, line, reason), a warning line is logged (file, line, number of
problems: never a user's text) and nothing else changes: the store stays byte for byte as it was. Only a failure of
the store itself (database busy, disk full) or of reading the file's bytes keeps the file in the inbox for the
next scan. Two workers watching the same inbox are harmless: ingestion is content-addressed, so the second one
finds the drop already stored.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from shoal.data.errors import DropRejected, Problem
from shoal.data.ingest import IngestResult, prepare_file, store, stored_rows
from shoal.data.readers import FORMATS
from shoal.data.text import printable
from shoal.worker.logs import emit
from shoal.workspace import Workspace

SUFFIXES = tuple(FORMATS)  # every format the readers know
PROCESSED, REJECTED = "processed", "rejected"
NEXT_STEP = "Fix the file and put it in the inbox again (this copy was moved to rejected/)."


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
        """Ingest one file; False when the store failed and the file stays for the next scan."""
        try:
            stored = stored_rows(self.ws, model)
        except Exception as error:
            return self._retry(model, path, error)
        try:
            prepared = prepare_file(self.ws, model, path, stored=stored)
        except FileNotFoundError:  # another worker took it first
            return True
        except DropRejected as error:
            self._reject(model, path, error)
            return True
        except OSError as error:  # the bytes could not be read (permissions, I/O): not what the file says
            return self._retry(model, path, error)
        except Exception as error:  # anything else validation raised is the file's too: retrying cannot help
            problem = Problem(None, f"the file could not be validated ({type(error).__name__}: {error})")
            self._reject(model, path, DropRejected(path.name, [problem]))
            return True
        try:
            result = store(self.ws, prepared)
        except Exception as error:  # not the file's fault (database busy, disk full): keep it and retry
            return self._retry(model, path, error)
        self._accepted(model, path, result)
        return True

    def _retry(self, model: str, path: Path, error: Exception) -> bool:
        """Log a failure that is not the file's (only the error's type and the system's reason: a message may quote
        a user's value) and keep the file for the next scan."""
        reason = f": {error.strerror}" if isinstance(error, OSError) and error.strerror else ""
        emit("inbox_error", 40, model=model, file=printable(path.name), error=f"{type(error).__name__}{reason}")
        return False

    def _accepted(self, model: str, path: Path, result: IngestResult) -> None:
        drop = result.drop
        _move(path, path.parent / PROCESSED)
        emit(
            "inbox_ingested",
            model=model,
            file=printable(path.name),
            drop=drop.hash[:12],
            rows=drop.n_rows,
            created=result.created,
            warnings=len(result.warnings),
        )

    def _reject(self, model: str, path: Path, error: DropRejected) -> None:
        """Move the file to rejected/ beside its reason; the log line names the file and the line, never a user's
        text (a reason may quote one)."""
        folder = path.parent / REJECTED
        moved = _move(path, folder)
        if moved is None:
            return
        error.next_step = NEXT_STEP
        moved.with_name(moved.name + ".error.txt").write_text(str(error) + "\n", encoding="utf-8")
        emit(
            "inbox_rejected",
            30,
            model=model,
            file=printable(path.name),
            line=error.first_line,
            problems=len(error.problems),
            reason_file=printable(str(moved)) + ".error.txt",
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
