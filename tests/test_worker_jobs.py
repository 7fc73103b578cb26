"""The worker's job path on real SMS spam data: a job past its wall-clock budget is stopped with its whole
process tree and recorded as failed, and the worker goes on; many jobs in a row in a process with busy threads
finish, and nothing on the job path forks; a long-running worker runs each job in a process that was already
waiting with its training pool, and leaves no process behind when it stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from conftest import spam_model, write_rows
from processes import assert_gone, paused_pid, process_tree, start_group, wait_for
from shoal.data.ingest import ingest_file
from shoal.faults import FORK_LOG_ENV, PAUSE_AT_ENV, PAUSE_FILE_ENV
from shoal.registry.jobs import DONE, FAILED, TRAIN, JobQueue
from shoal.worker.job_process import JobFailed, _exited, _stop, train_in_child
from shoal.worker.runner import Worker

BUDGET = 90  # the job must reach its search first: a fresh interpreter and two fold workers, on a busy machine too
JOBS = 20


@pytest.fixture
def spam(sms: pd.DataFrame) -> pd.DataFrame:
    return sms.head(300)


def test_a_job_past_its_budget_is_stopped_with_its_process_tree_and_the_worker_goes_on(
    make_workspace, spam, registry_url: str, tmp_path: Path
) -> None:
    slow = spam_model(retrain={"min_new_rows": 1, "debounce_seconds": 0, "max_job_seconds": BUDGET})
    fast = spam_model(retrain={"min_new_rows": 1, "debounce_seconds": 0, "max_job_seconds": 150})
    ws = make_workspace({"slow": slow, "fast": fast}, registry=registry_url, n_jobs=2)
    for name in ("slow", "fast"):
        ingest_file(ws, name, write_rows(tmp_path / f"{name}.csv", spam))
    pause = tmp_path / "paused"
    env = {**os.environ, PAUSE_AT_ENV: "search", PAUSE_FILE_ENV: str(pause)}
    command = [sys.executable, "-m", "shoal", "worker", "--once", "--poll", "0.2", "-w", str(ws.root)]
    worker = subprocess.Popen(command, env=env, stdout=(tmp_path / "worker.log").open("wb"), start_new_session=True)
    try:
        pid = paused_pid(pause, 120, "search")
        tree = process_tree(pid)  # the job's child and the fold workers it started
        assert tree[0].ppid() == worker.pid and len(tree) > 1, [p.cmdline() for p in tree]
        queue = JobQueue(ws.registry)
        wait_for(lambda: queue.jobs("slow")[0].status == FAILED, BUDGET + 60, "the slow job stopped")
        assert worker.poll() is None  # the worker lives on (its next job), so its exit did not end the tree
        assert_gone(tree, 2)  # stopped before the job was recorded failed
        assert worker.wait(timeout=250) == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()

    [stopped], [done] = queue.jobs("slow"), queue.jobs("fast")
    assert stopped.status == FAILED and stopped.lease_expires is None
    assert f"exceeded its wall-clock budget of {BUDGET} s" in (stopped.error or "")
    assert ws.registry.versions("slow") == [] and ws.registry.alias("slow") is None
    assert done.status == DONE and done.finished_at > stopped.finished_at
    assert ws.registry.alias("fast") is not None
    # the lease is given back: a retry of the stopped job is claimable at once
    queue.enqueue("slow", TRAIN, stopped.dataset_version, "manual", retry_failed=True)
    claimed = queue.claim("another worker")
    assert claimed is not None and claimed.id == stopped.id


def _busy_threads(stop: threading.Event) -> tuple[list[threading.Thread], ThreadPoolExecutor]:
    """A thread cycling a lock and a thread pool whose workers multiply matrices (BLAS) until `stop`."""
    lock = threading.Lock()

    def cycle() -> None:
        while not stop.is_set():
            with lock:
                pass

    def multiply() -> None:
        a = np.random.default_rng(0).random((120, 120))
        while not stop.is_set():
            a @ a

    threads = [threading.Thread(target=cycle, daemon=True)]
    threads[0].start()
    pool = ThreadPoolExecutor(2, thread_name_prefix="busy")
    for _ in range(2):
        pool.submit(multiply)
    return threads, pool


@pytest.mark.timeout(1800)  # each job is a fresh interpreter: 24 min for 20 jobs on a 2-core machine at load 16
def test_many_jobs_in_a_row_beside_busy_threads_finish_and_nothing_forks(
    make_workspace, spam, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = {f"m{i:02d}": spam_model(labels=["ham", "spam"]) for i in range(JOBS)}
    ws = make_workspace(models, n_jobs=1)
    rows = write_rows(tmp_path / "spam.csv", spam)
    for name in models:
        ingest_file(ws, name, rows)
    forks_here: list[int] = []
    os.register_at_fork(before=lambda: forks_here.append(os.getpid()))
    fork_log = tmp_path / "forks.log"
    monkeypatch.setenv(FORK_LOG_ENV, str(fork_log))  # the job children log their own forks
    stop = threading.Event()
    threads, pool = _busy_threads(stop)
    try:
        ran = Worker(ws, worker_id="w", settle_seconds=0).run(once=True)
    finally:
        stop.set()
        pool.shutdown(wait=True)
        for thread in threads:
            thread.join(timeout=10)

    assert ran == JOBS
    jobs = JobQueue(ws.registry).jobs()
    assert [j.status for j in jobs] == [DONE] * JOBS, [j.error for j in jobs]
    assert all(ws.registry.alias(name) is not None for name in models)
    assert forks_here == [], "the worker forked"
    assert not fork_log.exists(), f"a job's training forked: {fork_log.read_text()}"


def test_a_child_that_cannot_open_its_workspace_reports_why(tmp_path: Path) -> None:
    (tmp_path / "shoal.yaml").write_text("models: [not, a, mapping\n")  # the fleet file broke after the worker read it
    with pytest.raises(JobFailed) as failed:
        train_in_child(tmp_path, "spam", lambda model, what: None, 120)
    assert "without a result" not in str(failed.value), failed.value
    assert "shoal.yaml" in str(failed.value) or "fleet" in str(failed.value).lower(), failed.value


def test_a_stopped_child_is_signalled_before_it_is_reaped() -> None:
    """`_stop` must find the child's group and descendants while the child's pid still belongs to it: `_exited`
    waits for the end without reaping, so the exit status is still there for `Popen` afterwards."""
    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], start_new_session=True)
    ended = _exited(child.pid, 60)
    assert ended is not None and ended.si_status == 3
    assert child.returncode is None and child.wait(timeout=10) == 3  # not reaped by `_exited`
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    _stop(sleeper, 0)
    assert sleeper.returncode == -signal.SIGKILL


def waiting_job_process(worker: int, pool: int, timeout: float) -> tuple[psutil.Process, set[int]]:
    """The worker's job process, once it waits with `pool` pool processes, and their pids."""
    found: list[tuple[psutil.Process, set[int]]] = []

    def ready() -> bool:
        try:
            [job] = [c for c in psutil.Process(worker).children() if "shoal.worker.job_process" in c.cmdline()]
            workers = {c.pid for c in job.children() if any("popen_loky_posix" in part for part in c.cmdline())}
        except (psutil.NoSuchProcess, ValueError):  # none yet, or the last one just ended
            return False
        found.append((job, workers))
        return len(workers) >= pool

    wait_for(ready, timeout, f"a job process waiting with {pool} pool processes")
    return found[-1]


@pytest.mark.timeout(600)
def test_a_long_running_worker_runs_the_job_in_a_process_that_was_waiting_with_its_pool(
    make_workspace, spam, tmp_path: Path
) -> None:
    ws = make_workspace({"spam": spam_model()}, n_jobs=2)
    queue = JobQueue(ws.registry)
    command = [sys.executable, "-m", "shoal", "worker", "--poll", "0.2", "-w", str(ws.root)]
    worker = start_group(command, tmp_path / "worker.log", "search", tmp_path / "paused")
    try:
        waiting, pool = waiting_job_process(worker.pid, 2, 120)  # before any data
        inbox = ws.inbox("spam")
        inbox.mkdir(parents=True)
        write_rows(inbox / "spam.csv", spam)
        assert paused_pid(tmp_path / "paused", 120, "search") == waiting.pid  # the job ran in it
        assert pool <= {c.pid for c in waiting.children()}  # and its search on the pool it had started

        pool_processes = [psutil.Process(pid) for pid in pool]
        waiting.kill()  # the job's process dies: the job fails, its pool goes with it, and the next one waits
        wait_for(lambda: queue.jobs("spam")[0].status == FAILED, 60, "the job recorded failed")
        assert_gone(pool_processes, 30)
        after, _ = waiting_job_process(worker.pid, 2, 120)
        assert after.pid != waiting.pid

        tree = [after, *after.children(recursive=True)]
        os.kill(worker.pid, signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
        assert_gone(tree, 30)  # nothing waits on after the worker
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
