"""Real `shoal worker` processes: a worker killed with SIGKILL mid-job leaves its lease to expire and a second
worker completes the job with no duplicate version; SIGTERM hands the running job back to the queue at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import spam_model, write_rows
from shoal.data.ingest import ingest_file
from shoal.registry.jobs import DONE, QUEUED, JobQueue
from shoal.workspace import Workspace

LEASE = "3"


@pytest.fixture
def workspace(make_workspace, sms, tmp_path: Path) -> Workspace:
    ws = make_workspace({"spam": spam_model()}, n_jobs=1)
    ingest_file(ws, "spam", write_rows(tmp_path / "spam.csv", sms.head(300)))
    return ws


@pytest.fixture
def start(workspace: Workspace, tmp_path: Path) -> Iterator:
    started: list[subprocess.Popen[bytes]] = []

    def run() -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "shoal", "worker", "--lease", LEASE, "--poll", "0.2", "--log-json"]
        log = (tmp_path / f"worker{len(started)}.log").open("wb")
        process = subprocess.Popen(
            [*command, "-w", str(workspace.root)],
            stdout=log,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # the worker and its training pool, killable as one group
        )
        started.append(process)
        return process

    yield run
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {timeout:.0f} s")


def kinds(ws: Workspace) -> list[str]:
    return [e.kind for e in ws.registry.events("spam")]


def test_a_killed_worker_s_job_is_completed_by_another_after_its_lease_expires(workspace: Workspace, start) -> None:
    queue = JobQueue(workspace.registry)
    first = start()
    wait_for(lambda: "job_started" in kinds(workspace), 90, "the first worker starting its job")
    os.killpg(first.pid, signal.SIGKILL)  # a machine dying mid-training: no cleanup at all
    first.wait()
    [job] = queue.jobs("spam")
    assert job.status == "running" and job.attempts == 1
    killed_at = time.monotonic()

    second = start()
    wait_for(lambda: queue.job(job.id).status == DONE, 120, "the second worker finishing the job")
    assert time.monotonic() - killed_at >= float(LEASE) - 0.5  # not before the lease expired
    os.killpg(second.pid, signal.SIGTERM)
    assert second.wait(timeout=30) == 0

    done = queue.job(job.id)
    assert done.attempts == 2 and done.error is None and len(queue.jobs("spam")) == 1
    versions = workspace.registry.versions("spam")
    recipes = Counter((v.dataset_version, v.family, v.params_hash) for v in versions)
    assert max(recipes.values()) == 1 and {v.family for v in versions} == {"majority", "tfidf-logreg"}
    assert kinds(workspace).count("job_started") == 2 and kinds(workspace).count("job_finished") == 1
    assert workspace.registry.alias("spam") in {v.number for v in versions}


def test_sigterm_hands_the_running_job_back_and_exits_cleanly(workspace: Workspace, start, tmp_path: Path) -> None:
    queue = JobQueue(workspace.registry)
    worker = start()
    wait_for(lambda: "job_started" in kinds(workspace), 90, "the worker starting its job")
    os.killpg(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    [job] = queue.jobs("spam")
    assert job.status == QUEUED and job.lease_owner is None and job.attempts == 0
    assert kinds(workspace)[-1] == "job_released"
    lines = [json.loads(line) for line in (tmp_path / "worker0.log").read_text().splitlines()]
    events = [line["event"] for line in lines]
    assert events[0] == "worker_started" and events[-1] == "worker_stopped"
    assert {"job_queued", "job_started", "job_released"} <= set(events)
    assert all({"time", "level", "event"} <= set(line) for line in lines)
