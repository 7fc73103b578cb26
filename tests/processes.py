"""Helpers for the tests that run, pause and kill real processes: waiting on conditions (always with a timeout),
the named pause points of `shoal.faults`, and the consistency of a store after a crash."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from shoal.workspace import Workspace


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {timeout:.0f} s")


def paused_pid(pause_file: Path, timeout: float, point: str) -> int:
    """The pid of the process that stopped at `point` (it wrote `pause_file`)."""
    wait_for(pause_file.exists, timeout, f"a process pausing at {point!r}")
    return int(pause_file.read_text())


def process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def assert_gone(processes: list[psutil.Process], timeout: float) -> None:
    """Every process ended within `timeout` (a zombie waiting for its parent counts as ended)."""
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    alive = [p for p in alive if _running(p)]
    assert not alive, f"still running: {[(p.pid, p.cmdline()) for p in alive]}"


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_store_consistent(ws: Workspace, model: str) -> None:
    """Every version row has its artifact with a verifying checksum and loads; every committed artifact folder
    has its row (only `.staging` may hold leftovers); the production alias points at a verified version."""
    registry = ws.registry
    versions = registry.versions(model)
    for version in versions:
        registry.artifacts.open(version.artifact_uri, version.checksum)
        ws.load_predictor(version)
    registered = {v.artifact_uri.removeprefix("local:") for v in versions}
    folder = ws.artifact_root / "models" / model
    committed = {str(p.relative_to(ws.artifact_root)) for p in folder.iterdir()} if folder.exists() else set()
    assert committed == registered, f"artifacts without a row: {committed - registered}"
    production = registry.alias(model)
    assert production is None or production in {v.number for v in versions}


#: the named points of `shoal.faults.checkpoint` on the training path, in the order a training reaches them
POINTS = ["search", "artifact_written", "registered", "gate"]


def assert_stopped_at(ws: Workspace, model: str, point: str, families: list[str]) -> None:
    """The store shows a training of `families` (in order) stopped at `point` of its first family (or, at
    `gate`, after every family): what is registered, what is staged, and that no alias moved."""
    registered = [v.family for v in ws.registry.versions(model)]
    staging = ws.artifact_root / ".staging"
    staged = [p for p in staging.iterdir() if any(p.iterdir())] if staging.exists() else []
    expected = {"search": ([], 0), "artifact_written": ([], 1), "registered": (families[:1], 0), "gate": (families, 0)}
    assert (registered, len(staged)) == expected[point]
    assert ws.registry.alias(model) is None
