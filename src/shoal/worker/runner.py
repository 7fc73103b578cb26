"""The worker loop: watch inboxes and feedback, turn triggers into jobs, claim jobs and run them under a lease.

A job runs `train_model` (every family, evaluation, gate; promotion goes through the registry alias, which
the server polls) in a child process (`job_process`), stopped and recorded as failed past the model's
`retrain.max_job_seconds`. A thread renews the lease while it runs; a worker killed outright stops renewing (its
child dies with it) and another worker claims the job once the lease expires. Ctrl-C or SIGTERM stops the child
and hands the current job back to the queue. A long-running worker keeps the next job's process started and
waiting, its imports done and its training pool up (`JobProcess`): started with the worker and after each job,
never beside a running one.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from shoal.fleet import FleetError, load_fleet
from shoal.registry import Job
from shoal.registry.jobs import JobQueue
from shoal.train.executor import LOCAL
from shoal.train.trainer import ModelReport
from shoal.worker.coldstart import cold_start, held_cold
from shoal.worker.drift import DriftChecks
from shoal.worker.feedback import process_feedback
from shoal.worker.inbox import Inbox
from shoal.worker.job_process import JobFailed, JobProcess
from shoal.worker.logs import emit
from shoal.worker.triggers import Triggers
from shoal.workspace import Workspace


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Heartbeat:
    """Renews a job's lease every third of the lease until stopped; notes when the lease was lost."""

    def __init__(self, queue: JobQueue, job: Job, worker_id: str) -> None:
        self.queue, self.job, self.worker_id = queue, job, worker_id
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job.id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.queue.lease_seconds / 3):
            try:
                held = self.queue.heartbeat(self.job.id, self.worker_id)
            except Exception as error:  # a busy database: the next beat may succeed before the lease ends
                emit("heartbeat_failed", 30, job=self.job.id, error=f"{type(error).__name__}: {error}")
                continue
            if not held and not self.lost:
                self.lost = True
                emit("lease_lost", 30, model=self.job.model, job=self.job.id, worker=self.worker_id)


class Worker:
    """One worker process. `run()` loops until stopped; `run(once=True)` handles what is pending, then returns."""

    def __init__(
        self,
        ws: Workspace,
        *,
        worker_id: str | None = None,
        poll_seconds: float = 2.0,
        lease_seconds: float = 60.0,
        settle_seconds: float = 1.0,
        executor: str = LOCAL,
        address: str | None = None,
    ) -> None:
        self.ws = ws
        self.executor = (executor, address)  # where each job's fits run (`shoal.train.executor.open_executor`)
        self.worker_id = worker_id or worker_name()
        self.poll_seconds = poll_seconds
        self.queue = JobQueue(ws.registry, lease_seconds=lease_seconds)
        self.inbox = Inbox(ws, settle_seconds)
        self.triggers = Triggers(ws, self.queue)
        self.drift = DriftChecks(ws, self.triggers)
        self.predictions = ws.prediction_log()
        self._fleet_mtime = self._mtime()
        self._ready: JobProcess | None = None  # the next job's process, waiting (a long-running worker only)

    def run(self, *, once: bool = False) -> int:
        """Work until Ctrl-C or SIGTERM (or, with `once`, until nothing is left to do); returns the jobs run."""
        emit("worker_started", worker=self.worker_id, workspace=self.ws.root, lease=self.queue.lease_seconds)
        ran = 0
        try:
            with _sigterm_as_interrupt():
                if once:
                    self._settle()
                else:
                    self._ready = JobProcess(self.ws.root, *self.executor)
                while True:
                    if _STOP.is_set():  # a SIGTERM that a library swallowed while a job ran
                        raise KeyboardInterrupt
                    try:
                        self.scan()
                        job = self.queue.claim(self.worker_id)
                        if job is not None:
                            self.run_job(job)
                            ran += 1
                            if not once:
                                self._ready = JobProcess(self.ws.root, *self.executor)
                            continue
                    except Exception as error:  # a database outage must not end a long-running worker
                        if once:
                            raise
                        emit("worker_error", 40, error=f"{type(error).__name__}: {error}", retry_in=self.poll_seconds)
                    if once:
                        break
                    time.sleep(self.poll_seconds)
        except KeyboardInterrupt:
            emit("worker_interrupted", worker=self.worker_id)
        finally:
            if self._ready is not None:
                self._ready.close()
                self._ready = None
        emit("worker_stopped", worker=self.worker_id, jobs=ran)
        return ran

    def scan(self) -> None:
        """One pass over every model: inbox files, joined feedback, a cold start's LLM answers (`shoal.coldstart`),
        retrain triggers (held while a cold start has too few labelled rows), then its drift check."""
        self._reload_fleet()
        for model in self.ws.fleet.models:
            try:
                self.inbox.process(model)
                process_feedback(self.ws, self.predictions, model)
                cold_start(self.ws, self.predictions, model)
                if not held_cold(self.ws, model):
                    self.triggers.check(model)
                self.drift.check(model)
            except Exception as error:  # isolate: one model's trouble never stops the others
                emit("scan_failed", 40, model=model, error=f"{type(error).__name__}: {error}")

    def run_job(self, job: Job) -> None:
        """Train the job's model under a renewed lease and record how it ended (or hand it back if stopped)."""
        started = time.perf_counter()

        def step(model: str, what: str) -> None:
            emit("job_step", model=model, job=job.id, step=what)

        try:
            emit("job_started", model=job.model, job=job.id, attempt=job.attempts, reason=job.reason)
            with Heartbeat(self.queue, job, self.worker_id):
                budget = self.ws.model(job.model).retrain.max_job_seconds
                report = self._job_process().run(job.model, step, budget)
        except KeyboardInterrupt:
            self.queue.release(job.id, self.worker_id, "the worker was stopped")
            emit("job_released", model=job.model, job=job.id)
            raise
        except JobFailed as failed:
            self._finish(
                job,
                started,
                error=failed.message,
                payload={"traceback": failed.traceback} if failed.traceback else None,
            )
            return
        except Exception as error:
            message = f"{type(error).__name__}: {error}"
            self._finish(job, started, error=message, payload={"traceback": traceback.format_exc()})
            return
        failures = [f"{c.family}: {c.error}" for c in report.candidates if c.error]
        if not any(c.version for c in report.candidates):
            self._finish(job, started, error="every family failed: " + "; ".join(failures))
            return
        self._finish(job, started, message=describe(report), payload=_payload(report))

    def _job_process(self) -> JobProcess:
        """The waiting job process (one that ended meanwhile is replaced), else one started now."""
        ready, self._ready = self._ready, None
        if ready is not None and ready.waiting():
            return ready
        if ready is not None:
            ready.close()
        return JobProcess(self.ws.root, *self.executor)

    def _finish(
        self,
        job: Job,
        started: float,
        *,
        error: str | None = None,
        message: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        seconds = round(time.perf_counter() - started, 2)
        held = self.queue.finish(
            job.id, self.worker_id, error, message=message, payload={"seconds": seconds, **(payload or {})}
        )
        if not held:
            emit("lease_lost", 30, model=job.model, job=job.id, why="another worker claimed the job; its result stands")
            return
        if error:
            emit("job_failed", 40, model=job.model, job=job.id, seconds=seconds, error=error)
        else:
            emit("job_finished", model=job.model, job=job.id, seconds=seconds, result=message)

    def _settle(self) -> None:
        """For `--once`: note every inbox file's size, then wait long enough to know whether it is stable."""
        waiting = False
        for model in self.ws.fleet.models:
            waiting = bool(self.inbox.ready(model) or self.inbox.candidates(model)) or waiting
        if waiting:
            time.sleep(self.inbox.settle_seconds)

    def _mtime(self) -> float:
        try:
            return self.ws.fleet_path.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def _reload_fleet(self) -> None:
        """Pick up an edited shoal.yaml; a broken edit is reported and the last good fleet kept."""
        mtime = self._mtime()
        if mtime == self._fleet_mtime:
            return
        self._fleet_mtime = mtime
        try:
            load_fleet(self.ws.fleet_path)
        except FleetError as error:
            emit("fleet_invalid", 40, error=str(error), keeping="the last valid fleet")
            return
        self.ws.reload()
        emit("fleet_reloaded", models=",".join(self.ws.fleet.models))


def describe(report: ModelReport) -> str:
    """One line: what a training produced and what the gate decided."""
    parts = []
    for c in report.candidates:
        if c.version is not None:
            parts.append(f"{c.family} v{c.version.number}" + (" (reused)" if c.reused else ""))
        else:
            parts.append(f"{c.family} failed")
    gate = f"; gate: {report.decision.reason}" if report.decision else ""
    production = f"v{report.production}" if report.production else "none"
    return f"trained dataset {report.dataset_version}: {', '.join(parts)}{gate}; production {production}"


def _payload(report: ModelReport) -> dict[str, Any]:
    return {
        "dataset_version": report.dataset_version,
        "versions": {c.family: c.version.number for c in report.candidates if c.version},
        "promoted": bool(report.decision and report.decision.promote),
        "production": report.production,
    }


_STOP = threading.Event()  # set by SIGTERM, so a stop request survives libraries that catch KeyboardInterrupt


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the worker like Ctrl-C (when running in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        _STOP.set()
        raise KeyboardInterrupt

    _STOP.clear()
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
