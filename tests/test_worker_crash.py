"""Real `shoal worker` processes on SQLite and PostgreSQL: a worker killed with SIGKILL at each named point of a job
takes its job's training with it, leaves a consistent store and its lease to expire, and a second worker completes
the job with no duplicate version; SIGTERM stops the training and hands the running job back to the queue at once."""

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

import psutil
import pytest

from conftest import spam_model, write_rows
from processes import (
    POINTS,
    assert_gone,
    assert_stopped_at,
    assert_store_consistent,
    paused_pid,
    process_tree,
    start_group,
    wait_for,
)
from shoal.data.ingest import ingest_file
from shoal.registry.jobs import DONE, QUEUED, RUNNING, JobQueue
from shoal.workspace import Workspace

LEASE = "3"
FAMILIES = ["majority", "tfidf-logreg"]


@pytest.fixture
def workspace(make_workspace, sms, registry_url: str, tmp_path: Path) -> Workspace:
    ws = make_workspace({"spam": spam_model(families=FAMILIES)}, registry=registry_url, n_jobs=1)
    ingest_file(ws, "spam", write_rows(tmp_path / "spam.csv", sms.head(300)))
    return ws


@pytest.fixture
def start(workspace: Workspace, tmp_path: Path) -> Iterator:
    """`start(pause_at=None)` runs a worker; with `pause_at`, the first process reaching that point stops there
    and writes its pid to tmp_path/paused."""
    started: list[subprocess.Popen[bytes]] = []

    def run(pause_at: str | None = None) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "shoal", "worker", "--lease", LEASE, "--poll", "0.2", "--log-json"]
        log = tmp_path / f"worker{len(started)}.log"
        process = start_group([*command, "-w", str(workspace.root)], log, pause_at, tmp_path / "paused")
        started.append(process)
        return process

    yield run
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def kinds(ws: Workspace) -> list[str]:
    return [e.kind for e in ws.registry.events("spam")]


def training_of(worker: subprocess.Popen[bytes], point: str, tmp_path: Path) -> list[psutil.Process]:
    """The job's training process (paused at `point`, a child of `worker`) and its descendants."""
    tree = process_tree(paused_pid(tmp_path / "paused", 120, point))
    assert tree[0].ppid() == worker.pid
    return tree


@pytest.mark.timeout(600)  # two workers, each a fresh interpreter for its job: minutes on a loaded machine
@pytest.mark.parametrize("point", POINTS)
def test_a_worker_killed_at_each_point_leaves_a_consistent_store_and_another_worker_completes_the_job(
    workspace: Workspace, start, tmp_path: Path, point: str
) -> None:
    queue = JobQueue(workspace.registry)
    first = start(pause_at=point)
    training = training_of(first, point, tmp_path)
    os.killpg(first.pid, signal.SIGKILL)  # a machine dying mid-training: no cleanup at all
    first.wait()
    assert_gone(training, 30)  # the training died with its worker: no orphan finishing the job on its own
    [job] = queue.jobs("spam")
    assert job.status == RUNNING and job.attempts == 1
    assert_stopped_at(workspace, "spam", point, FAMILIES)
    assert_store_consistent(workspace, "spam")
    killed_at = time.monotonic()

    second = start()
    wait_for(lambda: queue.job(job.id).status == DONE, 180, "the second worker finishing the job")
    assert time.monotonic() - killed_at >= float(LEASE) - 0.5  # not before the lease expired
    os.killpg(second.pid, signal.SIGTERM)
    assert second.wait(timeout=30) == 0

    done = queue.job(job.id)
    assert done.attempts == 2 and done.error is None and len(queue.jobs("spam")) == 1
    versions = workspace.registry.versions("spam")
    recipes = Counter((v.dataset_version, v.family, v.params_hash) for v in versions)
    assert max(recipes.values()) == 1 and {v.family for v in versions} == set(FAMILIES)
    assert kinds(workspace).count("job_started") == 2 and kinds(workspace).count("job_finished") == 1
    assert workspace.registry.alias("spam") in {v.number for v in versions}
    assert_store_consistent(workspace, "spam")


def test_sigterm_stops_the_training_hands_the_running_job_back_and_exits_cleanly(
    workspace: Workspace, start, tmp_path: Path
) -> None:
    queue = JobQueue(workspace.registry)
    worker = start(pause_at="search")
    training = training_of(worker, "search", tmp_path)
    os.kill(worker.pid, signal.SIGTERM)  # the worker alone: it must stop its training itself
    assert worker.wait(timeout=60) == 0
    assert_gone(training, 10)
    [job] = queue.jobs("spam")
    assert job.status == QUEUED and job.lease_owner is None and job.attempts == 0
    assert kinds(workspace)[-1] == "job_released"
    lines = [json.loads(line) for line in (tmp_path / "worker0.log").read_text().splitlines()]
    events = [line["event"] for line in lines]
    assert events[0] == "worker_started" and events[-1] == "worker_stopped"
    assert {"job_queued", "job_started", "job_released"} <= set(events)
    assert all({"time", "level", "event"} <= set(line) for line in lines)
