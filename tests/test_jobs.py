"""The job queue on a real registry (SQLite, and PostgreSQL when SHOAL_TEST_POSTGRES_URL is set): claimers never
share a job, one job per model runs at a time, duplicates are refused, an expired lease is claimed again, and
every change of state is in the event log."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.registry import Registry
from shoal.registry.jobs import DONE, FAILED, QUEUED, RUNNING, SUPERSEDED, TRAIN, JobQueue

MODELS = [f"m{i}" for i in range(6)]
LEASE = 3.0  # long enough that a loaded machine's next statement still finds it live


@pytest.fixture
def registries(registry_url: str, tmp_path: Path) -> Iterator[list[Registry]]:
    """Two registries on one database, like two worker processes."""
    opened = [Registry(registry_url, tmp_path / "artifacts") for _ in range(2)]
    for name in MODELS:
        opened[0].ensure_model(name, "text-classification")
    yield opened
    for registry in opened:
        registry.close()


def test_concurrent_claimers_never_get_the_same_job(registries: list[Registry]) -> None:
    first = JobQueue(registries[0])
    for name in MODELS:
        for dataset in ("a", "b"):  # "b" supersedes "a": one runnable job per model
            first.enqueue(name, TRAIN, dataset, "test")
    claimed: list[tuple[str, int]] = []
    lock = threading.Lock()

    def claim_all(registry: Registry, worker: str) -> None:
        queue = JobQueue(registry)
        while (job := queue.claim(worker, 30)) is not None:
            with lock:
                claimed.append((worker, job.id))

    threads = [threading.Thread(target=claim_all, args=(r, f"w{i}")) for i, r in enumerate(registries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    ids = [job_id for _, job_id in claimed]
    assert len(ids) == len(set(ids)) == len(MODELS)
    jobs = first.jobs()
    assert Counter(j.status for j in jobs) == {RUNNING: len(MODELS), SUPERSEDED: len(MODELS)}
    assert all(j.dataset_version == "b" for j in jobs if j.status == RUNNING)


def test_one_running_job_per_model_and_duplicates_refused(registries: list[Registry]) -> None:
    queue, other = JobQueue(registries[0]), JobQueue(registries[1])
    job, created = queue.enqueue("m0", TRAIN, "v1", "new data")
    again, created_again = other.enqueue("m0", TRAIN, "v1", "new data, seen by another worker")
    assert created and not created_again and again.id == job.id
    assert len(queue.jobs("m0")) == 1

    running = queue.claim("w1", 30)
    assert running is not None and running.id == job.id and running.status == RUNNING
    later, _ = queue.enqueue("m0", TRAIN, "v2", "more data")
    assert queue.job(job.id).status == RUNNING  # a running job is never superseded
    assert other.claim("w2", 30) is None  # m0 is busy until w1 is done
    assert not other.finish(job.id, "w2")  # only the lease holder may finish it
    assert queue.finish(job.id, "w1")
    assert queue.job(job.id).status == DONE
    claimed = other.claim("w2", 30)
    assert claimed is not None and claimed.id == later.id


def test_an_expired_lease_is_claimed_again_and_the_old_holder_is_locked_out(registries: list[Registry]) -> None:
    queue, other = JobQueue(registries[0]), JobQueue(registries[1])
    job, _ = queue.enqueue("m1", TRAIN, "v1", "new data")
    claimed_at = time.monotonic()
    held = queue.claim("dead", LEASE)
    assert held is not None and held.attempts == 1
    assert other.claim("alive", 30) is None  # the lease is still live
    taken = None
    while taken is None and time.monotonic() - claimed_at < LEASE + 30:  # the "dead" worker stops renewing
        taken = other.claim("alive", 30)
        time.sleep(0.1)
    assert time.monotonic() - claimed_at >= LEASE  # not before the lease expired
    assert taken is not None and taken.id == job.id and taken.attempts == 2 and taken.lease_owner == "alive"
    assert not queue.heartbeat(job.id, "dead", 30)
    assert not queue.finish(job.id, "dead")
    assert other.heartbeat(job.id, "alive", 30)
    assert other.finish(job.id, "alive", message="trained")
    kinds = [e.kind for e in registries[0].events("m1")]
    assert kinds == ["job_queued", "job_started", "job_started", "job_finished"]
    assert "after dead stopped renewing" in registries[0].events("m1")[2].message


def test_heartbeats_keep_a_lease_and_release_hands_a_job_back(registries: list[Registry]) -> None:
    queue, other = JobQueue(registries[0], lease_seconds=0.4), JobQueue(registries[1])
    job, _ = queue.enqueue("m2", TRAIN, "v1", "new data")
    assert queue.claim("w1") is not None
    for _ in range(3):
        time.sleep(0.2)
        assert queue.heartbeat(job.id, "w1")
    assert other.claim("w2", 30) is None
    assert queue.release(job.id, "w1", "stopping")
    released = queue.job(job.id)
    assert released.status == QUEUED and released.attempts == 0 and released.lease_owner is None
    taken = other.claim("w2", 30)
    assert taken is not None and taken.id == job.id and taken.attempts == 1


def test_a_job_that_keeps_killing_its_worker_fails_and_retry_requeues_it(registries: list[Registry]) -> None:
    queue = JobQueue(registries[0], max_attempts=2)
    job, _ = queue.enqueue("m3", TRAIN, "v1", "new data")
    for worker in ("a", "b"):
        assert queue.claim(worker, 0.05) is not None
        time.sleep(0.1)
    assert queue.claim("c", 30) is None
    failed = queue.job(job.id)
    assert failed.status == FAILED and "2 times" in (failed.error or "")
    _, created = queue.enqueue("m3", TRAIN, "v1", "automatic trigger")
    assert not created and queue.job(job.id).status == FAILED  # triggers do not retry failures
    retried, created = queue.enqueue("m3", TRAIN, "v1", "manual", retry_failed=True)
    assert created and retried.id == job.id and retried.status == QUEUED and retried.attempts == 0
    assert queue.claim("d", 30) is not None
    assert queue.finish(job.id, "d", error="boom")
    assert queue.job(job.id).error == "boom"
    assert registries[0].events("m3")[-1].kind == "job_failed"
