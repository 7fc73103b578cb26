"""Inspect a workspace's store and repair what is safe to repair (`shoal doctor`).

The checks: every version's artifact is there and matches its checksum; every drop's file is there and holds the
rows its hash names; no artifact folder or drop file is left that no row refers to (a process killed between
writing it and writing its row); no staging folder of a dead process; every alias points at a version that
exists and verifies; no job is left `running` after its worker stopped renewing the lease.

A repair never deletes anything a row refers to and never moves an alias (that is a decision, with an actor in
the history: the doctor names the command instead). It removes staging folders of dead processes and partial
temporary files (both unfinished by construction), hands expired jobs back to the queue (what the next worker's
claim would do), and moves unreferenced artifacts aside into `.orphans/<time>/` rather than deleting them: a row
that turns up for one later (a registration slower than the grace period) gets its folder moved back by the next
repair. Leftovers younger than the grace period are only reported, since a live process may be about to write
their row.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from shoal.data.ingest import content_hash
from shoal.registry import ArtifactError, Registry, Version
from shoal.registry.jobs import JobQueue
from shoal.registry.shared_store import SharedArtifactStore, Store
from shoal.workspace import Workspace

ORPHANS = ".orphans"
#: leftovers younger than this may still be a live process's: a registration waits up to 120 s for the SQLite lock
ORPHAN_GRACE_SECONDS = 600.0
ACTOR = "shoal doctor"


@dataclass
class Check:
    """One check's outcome: what is still wrong, what the repair did, and what to do about the rest."""

    name: str
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    advice: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "advice": "" if self.ok else self.advice}


@dataclass
class Diagnosis:
    checks: list[Check]

    @property
    def healthy(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "checks": [check.as_dict() for check in self.checks]}


def examine(ws: Workspace, *, repair: bool = False, grace_seconds: float = ORPHAN_GRACE_SECONDS) -> Diagnosis:
    """Run every check on `ws`; with `repair`, fix what is safe first (see the module's doc)."""
    registry = ws.registry
    store = registry.artifacts
    versions = {model: registry.versions(model) for model in registry.model_names()}
    artifacts, broken = _versions(store, versions, repair)
    return Diagnosis(
        [
            _staging(store, repair),
            artifacts,
            _drops(registry, repair),
            _orphans(registry, versions, repair, grace_seconds),
            _aliases(registry, versions, broken),
            _jobs(JobQueue(registry), repair),
        ]
    )


def _staging(store: Store, repair: bool) -> Check:
    check = Check("staging folders", advice="shoal doctor --repair removes them (their process is gone)")
    if repair:
        check.repaired = [f"removed {_relative(store, f)}" for f in store.clean_stale_staging()]
    check.problems = [f"{_relative(store, f)}: its process is gone" for f in store.stale_staging()]
    if live := len(_children(store.staging)) - len(check.problems):
        check.notes.append(f"{live} in use by running processes (or made less than an hour ago by an older shoal)")
    return check


def _versions(store: Store, versions: dict[str, list[Version]], repair: bool) -> tuple[Check, set[tuple[str, int]]]:
    check = Check(
        "version artifacts",
        advice="these versions cannot be served: restore their folders from a backup, or train again "
        "(shoal train MODEL) and promote a version that verifies",
    )
    broken: set[tuple[str, int]] = set()
    for model, found in versions.items():
        for version in found:
            where = f"{model} v{version.number} ({version.family})"
            try:
                store.open(version.artifact_uri, version.checksum)
                continue
            except ArtifactError as error:
                problem = f"{where}: {error}"
            if repair and _restore(store, version.artifact_uri):
                try:
                    store.open(version.artifact_uri, version.checksum)
                    check.repaired.append(f"{where}: moved its folder back from {ORPHANS}/")
                    continue
                except ArtifactError as error:
                    problem = f"{where}: {error}"
            check.problems.append(problem)
            broken.add((model, version.number))
    check.notes.append(f"{sum(map(len, versions.values())) - len(broken)} verified")
    return check, broken


def _drops(registry: Registry, repair: bool) -> Check:
    check = Check("drop files", advice="training leaves these rows out: restore the files from a backup")
    store = registry.artifacts
    stored = [
        (f"{d.model} drop {d.hash[:12]}", d.uri, d.hash) for m in registry.model_names() for d in registry.drops(m)
    ]
    stored += [(f"pipeline {d.pipeline} test drop {d.hash[:12]}", d.uri, d.hash) for d in registry.pipeline_drops()]
    verified = 0
    for where, uri, expected in stored:
        problem = _drop_problem(store, uri, expected)
        if problem and repair and _restore(store, uri) and not _drop_problem(store, uri, expected):
            check.repaired.append(f"{where}: moved its file back from {ORPHANS}/")
        elif problem:
            check.problems.append(f"{where}: {problem}")
        else:
            verified += 1
    check.notes.append(f"{verified} verified")
    return check


def _drop_problem(store: Store, uri: str, expected: str) -> str | None:
    try:
        path = store.file(uri)
    except ArtifactError as error:  # a shared store's file that is not there
        return error.problem
    if not path.is_file():
        return f"its file is missing at {path}"
    try:
        rows = pd.read_parquet(path)
    except Exception as error:  # any unreadable file is the finding, whatever the reader raised
        return f"its file {path} cannot be read ({type(error).__name__})"
    return None if content_hash(rows) == expected else f"its file {path} holds other rows than its hash names"


def _orphans(registry: Registry, versions: dict[str, list[Version]], repair: bool, grace_seconds: float) -> Check:
    """Artifact folders (models/<model>/<key>) and drop files (data/<model>/<file>, pipelines/<pipeline>/<file>)
    that no row refers to."""
    check = Check(
        "unreferenced files",
        advice=f"when no process is writing to the store, shoal doctor --repair --grace 0 moves them into {ORPHANS}/ "
        "(and removes partial temporary files)",
    )
    store = registry.artifacts
    if isinstance(store, SharedArtifactStore):
        check.notes.append(f"not checked in the shared store {store.url} (only in a local one)")
        return check
    referenced = {store.path(v.artifact_uri) for found in versions.values() for v in found}
    referenced |= {store.path(d.uri) for model in registry.model_names() for d in registry.drops(model)}
    referenced |= {store.path(d.uri) for d in registry.pipeline_drops()}
    aside = store.root / ORPHANS / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    for entry in _stored_entries(store.root):
        if entry in referenced:
            continue
        name = _relative(store, entry)
        partial = entry.name.startswith(".") and entry.name.endswith(".tmp")
        age = time.time() - entry.lstat().st_ctime
        if age < grace_seconds:
            check.problems.append(f"{name}: no row refers to it (made {age:.0f} s ago; a process may still be writing)")
        elif not repair:
            check.problems.append(f"{name}: {'a partial write' if partial else 'no row refers to it'}")
        elif partial:
            entry.unlink()
            check.repaired.append(f"removed the partial write {name}")
        else:
            target = aside / entry.relative_to(store.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            entry.rename(target)
            check.repaired.append(f"moved {name} (no row refers to it) to {_relative(store, target)}")
    kept = len(list((store.root / ORPHANS).glob("*/*/*/*")))
    if kept:
        check.notes.append(f"{kept} set aside earlier in {ORPHANS}/: delete them once no row needs them back")
    return check


def _stored_entries(root: Path) -> list[Path]:
    return [
        entry
        for kind in ("models", "data", "pipelines")
        for owner in _children(root / kind)
        for entry in _children(owner)
    ]


def _children(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _restore(store: Store, uri: str) -> bool:
    """Move the newest copy that a repair set aside back to where `uri` points; False when there is none (and in a
    shared store, where a repair sets nothing aside)."""
    if isinstance(store, SharedArtifactStore):
        return False
    relative = store.path(uri).relative_to(store.root)
    if store.path(uri).exists():
        return False
    copies = sorted((store.root / ORPHANS).glob(f"*/{relative.as_posix()}"))
    if not copies:
        return False
    store.path(uri).parent.mkdir(parents=True, exist_ok=True)
    shutil.move(copies[-1], store.path(uri))
    return True


def _aliases(registry: Registry, versions: dict[str, list[Version]], broken: set[tuple[str, int]]) -> Check:
    check = Check("aliases")
    for model, alias, number in registry.aliases():
        numbers = {v.number for v in versions.get(model, [])}
        if number in numbers and (model, number) not in broken:
            continue
        why = "does not exist" if number not in numbers else "does not verify"
        good = sorted(numbers - {n for m, n in broken if m == model})
        fix = f"shoal promote {model} {good[-1]}" if good else f"shoal train {model}"
        check.problems.append(f"{model} {alias} -> v{number}, which {why}; to fix: {fix}")
    check.advice = "point each alias at a version that verifies (the commands above); the doctor never moves one"
    return check


def _jobs(queue: JobQueue, repair: bool) -> Check:
    check = Check(
        "jobs", advice="start a worker (shoal worker), which claims them again, or shoal doctor --repair to requeue"
    )
    if repair:
        check.repaired = [
            f"job {job.id} ({job.model}): lease expired, now {job.status}" for job in queue.hand_back_expired(ACTOR)
        ]
    check.problems = [
        f"job {job.id} ({job.model}, {job.kind}) is marked running by {job.lease_owner}, whose lease ran out at "
        f"{job.lease_expires:%Y-%m-%d %H:%M:%S} UTC"
        for job in queue.expired()
    ]
    return check


def _relative(store: Store, path: Path) -> str:
    return path.relative_to(store.root).as_posix()
