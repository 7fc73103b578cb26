"""One job's training in a child process of its own, so that it can always be stopped.

The child is started with `spawn` (a fresh interpreter: never a fork of the worker, which has threads), leads
its own session so the processes it starts belong to it, is signalled when the worker dies (Linux) and then
takes its whole session down, and sends its steps and its `ModelReport` back over a pipe. Past its wall-clock
budget, or when the worker is stopped, the whole process tree is killed.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import time
import traceback
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

import psutil

from shoal.faults import log_forks
from shoal.train.trainer import ModelReport, Step, TrainError, train_model
from shoal.workspace import Workspace

_PR_SET_PDEATHSIG = 1
_REAP_SECONDS = 10.0


@dataclass
class JobFailed(Exception):
    """The training did not produce a report: why, and the child's traceback when it raised."""

    message: str
    traceback: str | None = None

    def __str__(self) -> str:
        return self.message


def train_in_child(root: Path, name: str, step: Step, budget_seconds: float) -> ModelReport:
    """`train_model(Workspace(root), name, step)` in a child process, stopped after `budget_seconds`."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(str(root), name, send, os.getpid()), name=f"shoal-job-{name}")
    process.start()
    send.close()
    try:
        return _receive(process, receive, step, time.monotonic() + budget_seconds, budget_seconds)
    finally:
        receive.close()
        _stop(process)


def _receive(process: BaseProcess, receive: Connection, step: Step, deadline: float, budget: float) -> ModelReport:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise JobFailed(f"the job exceeded its wall-clock budget of {budget:g} s and was stopped")
        ready = wait([receive, process.sentinel], timeout=left)
        if receive not in ready and not receive.poll(0):
            if process.sentinel in ready:
                raise _ended(process)
            continue
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


def _ended(process: BaseProcess) -> JobFailed:
    process.join(_REAP_SECONDS)
    return JobFailed(f"the training process ended (exit code {process.exitcode}) without a result")


def _stop(process: BaseProcess) -> None:
    """SIGKILL the child, its process group and every descendant (a no-op for what has ended); reap them."""
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # the child leads its own group: this reaches its pool workers
    process.kill()
    process.join(_REAP_SECONDS)
    for descendant in descendants:
        with suppress(psutil.NoSuchProcess):
            descendant.kill()
    psutil.wait_procs(descendants, timeout=_REAP_SECONDS)


def _child(root: str, name: str, send: Connection, parent: int) -> None:
    os.setsid()
    _die_with_parent(parent)
    log_forks()
    ws = Workspace(root)
    try:
        report = train_model(ws, name, lambda model, what: send.send(("step", model, what)))
        send.send(("report", report))
    except TrainError as error:
        send.send(("error", str(error)))
    except Exception as error:
        send.send(("error", f"{type(error).__name__}: {error}", traceback.format_exc()))
    finally:
        ws.close()
        send.close()


def _die_with_parent(parent: int) -> None:
    """When the worker dies (even by SIGKILL) the kernel sends this child SIGTERM; it then kills its session."""

    def end_session(_signum: int, _frame: FrameType | None) -> None:
        os.killpg(0, signal.SIGKILL)

    signal.signal(signal.SIGTERM, end_session)
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the worker died before the signal was armed
        os.killpg(0, signal.SIGKILL)
