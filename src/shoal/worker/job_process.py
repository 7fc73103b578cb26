"""One job's training in a child process of its own, so that it can always be stopped.

The child is a fresh interpreter (`python -m shoal.worker.job_process`, started like multiprocessing's `spawn`
but without re-importing the worker's main module, the whole CLI): never a fork of the worker, which has threads.
It leads its own session so the processes it starts belong to it, is signalled when the worker dies (Linux) and
then takes its whole session down, and sends its steps and its `ModelReport` back over a pipe. Past its
wall-clock budget, or when the worker is stopped, the whole process tree is killed.

A child is started before its job is known (`JobProcess`): it imports the training code and starts its training
pool, then waits for the model's name on a pipe, so a long-running worker keeps one ready and a data drop does not
pay for an interpreter, its imports and the pool's processes. It trains one job, then ends.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
import traceback
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import FrameType

import psutil

from shoal.families import get_family
from shoal.faults import log_forks
from shoal.tasks import get_task
from shoal.train.executor import LOCAL, Executor, open_executor
from shoal.train.search import start_pool
from shoal.train.trainer import ModelReport, Step, TrainError, candidate_families, train_model
from shoal.workspace import Workspace

_PR_SET_PDEATHSIG = 1
_REAP_SECONDS = 10.0
_CHECK_SECONDS = 1.0
_EXIT_GRACE_SECONDS = 10.0
_POLL_SECONDS = 0.05


@dataclass
class JobFailed(Exception):
    """The training did not produce a report: why, and the child's traceback when it raised."""

    message: str
    traceback: str | None = None

    def __str__(self) -> str:
        return self.message


class JobProcess:
    """A fresh interpreter for one job, started before the job is known: it imports the training code and starts
    its training pool (`_prepare`), then waits for a model's name. The worker keeps one ready, so a data drop
    does not wait for an interpreter and a pool to start; the fleet file is read when the job arrives."""

    def __init__(self, root: Path, executor: str = LOCAL, address: str | None = None) -> None:
        job_read, job_write = os.pipe()  # worker -> child: the model to train
        read, write = os.pipe()  # child -> worker: its steps and its report
        args = [str(root), str(job_read), str(write), str(os.getpid()), executor, address or ""]
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", __name__, *args],
                pass_fds=(job_read, write),
                start_new_session=True,
            )
        except BaseException:
            os.close(job_write)
            os.close(read)
            raise
        finally:
            os.close(job_read)
            os.close(write)
        self._jobs = Connection(job_write, readable=False)
        self._receive = Connection(read, writable=False)
        self._open = True

    def waiting(self) -> bool:
        """Whether it can still take its job (not used, not ended)."""
        return self._open and _exited(self.process.pid, 0) is None

    def run(self, name: str, step: Step, budget_seconds: float) -> ModelReport:
        """`train_model(Workspace(root), name, step)` in this process, stopped after `budget_seconds` (counted from
        now); the process ends with its job."""
        deadline = time.monotonic() + budget_seconds
        grace = 0.0
        try:
            with suppress(OSError):  # it ended meanwhile: `_receive` says how
                self._jobs.send(name)
            report = _receive(self.process, self._receive, step, deadline, budget_seconds)
            grace = _EXIT_GRACE_SECONDS  # a child that reported is closing its workspace: let it end on its own
            return report
        finally:
            self._close(grace)

    def close(self) -> None:
        """Stop it (unused, or after its job) with every process it started."""
        self._close(0.0)

    def _close(self, grace: float) -> None:
        if not self._open:
            return
        self._open = False
        self._jobs.close()
        self._receive.close()
        _stop(self.process, grace)


def train_in_child(root: Path, name: str, step: Step, budget_seconds: float) -> ModelReport:
    """`train_model(Workspace(root), name, step)` in a child process started now, stopped after `budget_seconds`."""
    return JobProcess(root).run(name, step, budget_seconds)


def _receive(
    process: subprocess.Popen[bytes], receive: Connection, step: Step, deadline: float, budget: float
) -> ModelReport:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise JobFailed(f"the job exceeded its wall-clock budget of {budget:g} s and was stopped")
        if not wait([receive], timeout=min(left, _CHECK_SECONDS)) and _exited(process.pid, 0) is None:
            continue
        if not receive.poll(0):  # the child ended, and sent nothing more
            raise _ended(process)
        try:
            kind, *message = receive.recv()
        except EOFError:
            raise _ended(process) from None
        if kind == "step":
            step(*message)
        elif kind == "report":
            return message[0]
        else:
            raise JobFailed(*message)


def _ended(process: subprocess.Popen[bytes]) -> JobFailed:
    ended = _exited(process.pid, _REAP_SECONDS)
    how = "?" if ended is None else _how(ended)
    return JobFailed(f"the training process ended ({how}) without a result")


def _how(ended: os.waitid_result) -> str:
    if ended.si_code == os.CLD_EXITED:
        return f"exit code {ended.si_status}"
    return f"killed by signal {ended.si_status}"


def _exited(pid: int, seconds: float) -> os.waitid_result | None:
    """Wait up to `seconds` for the child to end, *without reaping it*: while it is an unreaped zombie its pid (and
    so its process group's id) cannot be given to another process, so signalling them stays safe."""
    deadline = time.monotonic() + seconds
    while True:
        with suppress(ChildProcessError):
            ended = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if ended is not None:
                return ended
        if time.monotonic() >= deadline:
            return None
        time.sleep(_POLL_SECONDS)


def _stop(process: subprocess.Popen[bytes], grace: float) -> None:
    """After up to `grace` seconds, SIGKILL the child, its process group and every descendant, then reap them.

    Everything is signalled before the child is reaped (see `_exited`), so no pid can have been reused.
    """
    _exited(process.pid, grace)
    descendants: list[psutil.Process] = []
    with suppress(psutil.NoSuchProcess):
        descendants = psutil.Process(process.pid).children(recursive=True)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # the child leads its own group: this reaches its pool workers
    process.kill()
    with suppress(subprocess.TimeoutExpired):
        process.wait(_REAP_SECONDS)
    for descendant in descendants:
        with suppress(psutil.NoSuchProcess):
            descendant.kill()
    psutil.wait_procs(descendants, timeout=_REAP_SECONDS)


def _child(root: str, jobs: Connection, send: Connection, parent: int, executor: str, address: str | None) -> None:
    _die_with_parent(parent)
    log_forks()
    prepared = _prepare(Path(root), executor, address)
    try:
        name = jobs.recv()
    except EOFError:  # the worker stopped without a job for this process
        return
    finally:
        jobs.close()
    ws = Workspace(root)  # only resolves the path: the fleet file is read inside the try
    try:
        chosen = prepared or open_executor(executor, address)
        report = train_model(ws, name, lambda model, what: send.send(("step", model, what)), chosen)
        send.send(("report", report))
    except TrainError as error:
        send.send(("error", str(error)))
    except Exception as error:
        send.send(("error", f"{type(error).__name__}: {error}", traceback.format_exc()))
    finally:
        ws.close()
        send.close()


def _prepare(root: Path, executor: str, address: str | None) -> Executor | None:
    """Before the job arrives: import the fleet's task kinds and families here and in the training pool, whose
    processes it starts (`start_pool`), or connect to the executor's cluster (returned). Best effort: a fleet file
    that does not load or a cluster that does not answer now is the job's to report."""
    try:
        if executor != LOCAL:
            return open_executor(executor, address)
        ws = Workspace(root)
        fleet, n_jobs = ws.fleet, ws.fleet.workspace.n_jobs
        needs = [get_task(spec.task) for spec in fleet.models.values()]
        needs += [get_family(name) for spec in fleet.models.values() for name in candidate_families(spec)]
        start_pool(n_jobs, needs)
    except Exception as error:  # nothing is lost: the job starts what it needs itself
        print(f"job process: not prepared ({type(error).__name__})", file=sys.stderr)
    return None


def _die_with_parent(parent: int) -> None:
    """When the worker dies (even by SIGKILL) the kernel sends this child SIGTERM; it then kills its session."""

    owner = os.getpid()

    def end_session(signum: int, _frame: FrameType | None) -> None:
        if os.getpid() != owner:  # a forked child inherited this handler: end as SIGTERM would
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        os.killpg(0, signal.SIGKILL)

    signal.signal(signal.SIGTERM, end_session)
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the worker died before the signal was armed
        os.killpg(0, signal.SIGKILL)


if __name__ == "__main__":
    _root, _jobs, _send, _parent, _executor, _address = sys.argv[1:]
    _child(
        _root,
        Connection(int(_jobs), writable=False),
        Connection(int(_send), readable=False),
        int(_parent),
        _executor,
        _address or None,
    )
