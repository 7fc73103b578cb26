"""Helpers for the tests that run, pause and kill real processes: waiting on conditions (always with a timeout),
the named pause points of `shoal.faults`, and the consistency of a store after a crash."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest

from shoal.doctor import examine
from shoal.faults import PAUSE_AT_ENV, PAUSE_FILE_ENV
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
    """`shoal doctor` finds nothing wrong but what a kill leaves by design (a dead process's staging folder, a
    job whose lease the next worker takes over), and every version of `model` loads."""
    diagnosis = examine(ws)
    problems = {c.name: c.problems for c in diagnosis.checks if c.problems and c.name not in LEFT_BY_A_KILL}
    assert problems == {}, problems
    for version in ws.registry.versions(model):
        ws.load_predictor(version)


#: the doctor's checks whose problems a kill leaves on purpose: the next run or `shoal doctor --repair` clears them
LEFT_BY_A_KILL = {"staging folders", "jobs"}


def start_group(
    command: list[str], log: Path, point: str | None = None, pause_file: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `command` in a process group of its own, its output appended to `log` (errors to `log`.err); with
    `point`, its first process to reach that point stops there and writes its pid to `pause_file`."""
    env = dict(os.environ)
    if point:
        env.update({PAUSE_AT_ENV: point, PAUSE_FILE_ENV: str(pause_file)})
    with log.open("ab") as output, log.with_name(log.name + ".err").open("ab") as errors:
        return subprocess.Popen(command, env=env, stdout=output, stderr=errors, start_new_session=True)


def kill_when_paused(process: subprocess.Popen[bytes], point: str, pause_file: Path, timeout: float) -> int:
    """Wait until `process` (or one of its children) pauses at `point`, then SIGKILL its whole group, as a dying
    machine would (no cleanup at all); return the pid that paused."""
    try:
        return paused_pid(pause_file, timeout, point)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


#: the named points of `shoal.faults.checkpoint` on the training path, in the order a training reaches them
POINTS = ["search", "artifact_written", "registered", "gate"]


def assert_stopped_at(ws: Workspace, model: str, point: str, families: list[str]) -> None:
    """The store shows a training of `families` (in order) stopped at `point` of its first family (or, at
    `gate`, after every family): what is registered, what is staged (the families' final fits run together, so
    every artifact is staged before the first is registered), and that no alias moved."""
    registered = [v.family for v in ws.registry.versions(model)]
    staging = ws.artifact_root / ".staging"
    staged = [p for p in staging.iterdir() if any(p.iterdir())] if staging.exists() else []
    expected = {
        "search": ([], 0),
        "artifact_written": ([], len(families)),
        "registered": (families[:1], len(families) - 1),
        "gate": (families, 0),
    }
    assert (registered, len(staged)) == expected[point]
    assert ws.registry.alias(model) is None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def shoal_serve(root: Path, ready_within: float, *, quiet: bool = False) -> Iterator[tuple[str, psutil.Process]]:
    """`shoal serve` of `root` in its own process (and session), once `/readyz` answers 200; yields its URL and
    process, and stops it (SIGTERM to its group) on exit. `quiet` discards its output."""
    port = free_port()
    output = subprocess.DEVNULL if quiet else None
    process = subprocess.Popen(
        [sys.executable, "-m", "shoal", "serve", "--port", str(port), "-w", str(root)],
        start_new_session=True,
        stdout=output,
        stderr=output,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_within
        while True:
            assert process.poll() is None, f"shoal serve exited with {process.returncode}"
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"shoal serve was not ready within {ready_within:g} s"
            time.sleep(0.1)
        yield url, psutil.Process(process.pid)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
