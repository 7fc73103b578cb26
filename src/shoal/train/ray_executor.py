"""The Ray executor (`shoal train --executor ray`, `shoal worker --executor ray`): each (model, family) fit on a Ray
cluster. Imported only when chosen: `pip install 'shoal[ray]'`.

Each family's CV search, final fit, audit and evaluation is one Ray task declaring its CPUs and memory, spread over
the nodes. It writes nothing shared: it stages the artifact in a temporary folder of its node and sends the files
back with the results, so a task that Ray retries (its worker or node died) only computes the same answer again.
The fits of many models (`models_at_once`) are submitted together, so a fleet of small models fills the cluster;
once all of them are back, the trainer's process writes each artifact into its staging folder, has the latency
timed by a task on the declared quiet resource (`shoal_latency`: one per node, one CPU) with nothing of the batch
fitting, and registers the versions, model after model: the gate and every registry write happen there, one
transaction per version, as with the local executor.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import GetTimeoutError

from shoal.families import get_family
from shoal.faults import PAUSE_AT_ENV, PAUSE_FILE_ENV
from shoal.registry.records import VersionMetrics
from shoal.train.candidates import Built, Job
from shoal.train.errors import TrainError
from shoal.train.executor import Fitted, Pending, Staging, Work, fit_families, timed_costs, without_bulk
from shoal.train.search import Failed

#: the custom resource a node declares for latency timing: `ray start ... --resources '{"shoal_latency": 1}'`
LATENCY_RESOURCE = "shoal_latency"
#: seconds a candidate's latency timing may take at least (a worker's start and imports, then the timing itself)
LATENCY_MIN_S = 120.0
#: a task whose worker or node dies is run again this many times
MAX_RETRIES = 3
Files = dict[str, bytes]
Ran = tuple[str, float, float]  # a fit's node, start and end (wall clock)


class RayUnavailable(TrainError):
    """No Ray cluster to train on, or one without the quiet resource (the message says what to start)."""


class _TemporaryStaging:
    """Staging folders in a temporary folder of this node (a task's artifact, sent back as files)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def stage(self) -> Path:
        folder = self.root / uuid.uuid4().hex
        folder.mkdir()
        return folder

    def discard(self, staged: Path) -> None:
        shutil.rmtree(staged, ignore_errors=True)


def _read(folder: Path) -> Files:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _write(files: Files, folder: Path) -> None:
    for relative, content in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


@ray.remote(max_retries=MAX_RETRIES, max_calls=1)
def _fit(work: Work, family: str, cpus: int) -> tuple[Fitted, Files, tuple[float, float]]:
    """One family's search, final fit, audit and evaluation on this node, and when it started and ended here (wall
    clock; keyed by model, dataset version and family: running it again gives the same answer and writes nothing
    shared). It uses the `cpus` processes it declared, and its worker exits after it (`max_calls=1`), its processes
    with it."""
    started = time.time()
    work = replace(work, families=[get_family(family)], settings=work.settings.model_copy(update={"n_jobs": cpus}))
    with tempfile.TemporaryDirectory(prefix="shoal-fit-") as folder:
        fitted = fit_families(work, _TemporaryStaging(Path(folder)))
        files = {name: _read(job.staged) for name, job in fitted.jobs.items()}
    fitted.jobs = {name: without_bulk(job) for name, job in fitted.jobs.items()}
    fitted.nodes = dict.fromkeys(fitted.jobs, ray.get_runtime_context().get_node_id())
    return fitted, files.get(family, {}), (started, time.time())


@ray.remote(num_cpus=1, resources={LATENCY_RESOURCE: 1}, max_retries=MAX_RETRIES)
def _costs(work: Work, family: str, built: Built, files: Files, size_bytes: int) -> tuple[VersionMetrics, Any]:
    """The candidate's metrics with its latency timed here, on the node's quiet CPU."""
    with tempfile.TemporaryDirectory(prefix="shoal-latency-") as folder:
        _write(files, Path(folder))
        return timed_costs(work.task, get_family(family), built, Path(folder), work.test, work.settings, size_bytes)


@dataclass
class _Submitted:
    """One model's fit tasks: its work (and its copy in the object store), where its artifacts are staged, when it
    was submitted (wall clock, and `perf_counter` for its budget's `deadline`), and what came back so far, with each
    family's (start, end) on its node and the wall time its result arrived here."""

    work: Work
    shared: ray.ObjectRef
    staging: Staging
    submitted: float
    started: float
    deadline: float
    fitted: Fitted = field(default_factory=Fitted)
    times: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    handed: bool = False  # its `Fitted` went to the trainer


def overhead(submitted: float, node: str, start: float, end: float, received: float, ran: list[Ran]) -> float:
    """A fit task's seconds beyond its own work (wall clock): from the moment its node had a CPU free for it to its
    start, plus from its end to its result in the driver. The moment a CPU was free: the later of its submission and
    the last end of another fit on that node before it started (`ran`: every fit's node, start and end), since a
    fleet's tasks queue for the cluster's CPUs and that wait is not Ray's."""
    ends = [e for n, _s, e in ran if n == node and e <= start]
    return max(0.0, start - max([submitted, *ends])) + max(0.0, received - end)


class RayExecutor:
    """The Ray cluster at `address` (default: `RAY_ADDRESS`, else the cluster this node belongs to). Each fit task
    declares `cpus` CPUs (its search's processes) and `memory_mb` of memory; the fits of `models_at_once` models are
    submitted together, so many small models fill the cluster."""

    def __init__(
        self, address: str | None = None, cpus: int = 1, memory_mb: int = 1024, models_at_once: int = 32
    ) -> None:
        self.cpus, self.memory, self.models_at_once = cpus, memory_mb * 2**20, models_at_once
        self._submitted: list[_Submitted] = []  # the models submitted since the trainer last took every result
        self._tasks: dict[ray.ObjectRef, tuple[_Submitted, str]] = {}  # the fit tasks not back yet, by family
        env = {k: os.environ[k] for k in (PAUSE_AT_ENV, PAUSE_FILE_ENV) if k in os.environ}  # the crash tests'
        if not ray.is_initialized():
            try:
                ray.init(
                    address=address or os.environ.get("RAY_ADDRESS") or "auto",
                    log_to_driver=False,
                    runtime_env={"env_vars": env} if env else None,
                )
            except (ConnectionError, RuntimeError) as error:
                raise RayUnavailable(
                    f"no Ray cluster to train on ({error}); start one with 'ray start --head --resources "
                    f"'{{\"{LATENCY_RESOURCE}\": 1}}'' (and 'ray start --address HEAD:PORT' on each other node), or "
                    "pass --address HEAD:PORT"
                ) from None
        if ray.cluster_resources().get(LATENCY_RESOURCE, 0) < 1:
            raise RayUnavailable(
                f"no node of the Ray cluster declares the quiet resource for latency timing; start each node with "
                f"'ray start ... --resources '{{\"{LATENCY_RESOURCE}\": 1}}''"
            )

    def submit(self, work: Work, staging: Staging) -> Pending:
        """Every family as a task of its own, spread over the nodes; the call waits for every model submitted so
        far (so nothing is fitting when the trainer times latency) and stages this model's artifacts here."""
        self._submitted = [s for s in self._submitted if not s.handed]
        started = time.perf_counter()
        entry = _Submitted(
            work, ray.put(work), staging, time.time(), started, started + work.spec.retrain.max_job_seconds
        )
        for family in work.families:
            task = _fit.options(
                num_cpus=self.cpus,
                memory=self.memory,
                scheduling_strategy="SPREAD",
                name=f"shoal-fit:{work.model}:{work.dataset_version}:{family.name}",
            ).remote(entry.shared, family.name, self.cpus)
            self._tasks[task] = (entry, family.name)
        self._submitted.append(entry)
        return lambda: self._result(entry)

    def _result(self, entry: _Submitted) -> Fitted:
        self._drain()
        fitted, work = entry.fitted, entry.work
        # registered in the families' order, as the local executor does, not in the order the tasks ended
        fitted.jobs = {f.name: fitted.jobs[f.name] for f in work.families if f.name in fitted.jobs}
        entry.handed = True
        return fitted

    def _drain(self) -> None:
        """Every submitted fit's result (a model's fits still running past its budget are cancelled), then each
        task's overhead, once every task of the batch is known."""
        while self._tasks:
            deadline = min(entry.deadline for entry, _ in self._tasks.values())
            timeout = max(0.0, deadline - time.perf_counter())
            done, _ = ray.wait(list(self._tasks), num_returns=1, timeout=timeout)
            if not done:  # past a model's budget: what still runs of it is cancelled
                for task, (entry, name) in list(self._tasks.items()):
                    if entry.deadline <= time.perf_counter():
                        ray.cancel(task, force=True)
                        del self._tasks[task]
                        budget = entry.work.spec.retrain.max_job_seconds
                        entry.fitted.failed[name] = Failed(f"the fit did not end within {budget:g} s", "")
                continue
            entry, name = self._tasks.pop(done[0])
            self._collect(entry, name, done[0])
        ran = [(e.fitted.nodes[f], *t[:2]) for e in self._submitted for f, t in e.times.items()]
        for entry in self._submitted:
            # until the whole batch is back: its registration waits for that (nothing fits while latency is timed)
            entry.fitted.steps.setdefault("ray_fits", time.perf_counter() - entry.started)
            for family, (start, end, received) in entry.times.items():
                node = entry.fitted.nodes[family]
                entry.fitted.overhead[family] = overhead(entry.submitted, node, start, end, received, ran)

    def _collect(self, entry: _Submitted, name: str, task: ray.ObjectRef) -> None:
        """One fit's result into its model's `Fitted`, its artifact staged here."""
        fitted = entry.fitted
        try:
            part, files, (start, end) = ray.get(task)
        except Exception as error:  # its retries are spent (a node died each time), Ray broke, or unreadable: this
            fitted.failed[name] = Failed(f"{type(error).__name__}: {error}", "")  # family's failure, no other's
            return
        received = time.time()
        for family, job in part.jobs.items():
            try:
                staged = entry.staging.stage()
                _write(files, staged)
            except OSError as error:
                part.failed[family] = Failed(f"{type(error).__name__}: {error}", "")
                continue
            fitted.jobs[family] = replace(job, staged=staged)
            entry.times[family] = (start, end, received)
        for key in ("built", "failed", "search_seconds", "features_seconds", "nodes"):
            getattr(fitted, key).update(getattr(part, key))
        fitted.sampled = part.sampled if part.sampled is not None else fitted.sampled

    def _entry(self, work: Work) -> _Submitted:
        return next(entry for entry in self._submitted if entry.work is work)

    def costs(self, work: Work, job: Job, built: Built, size_bytes: int) -> tuple[VersionMetrics, dict[str, float]]:
        """Timed on a node's quiet CPU, within what is left of the model's budget (from its submission), but never
        less than `LATENCY_MIN_S`: a batch's registration waits for its slowest model's fits, which may have spent
        most of a quick model's budget."""
        entry = self._entry(work)
        task = _costs.remote(entry.shared, job.family.name, built, _read(job.staged), size_bytes)
        timeout = max(LATENCY_MIN_S, entry.deadline - time.perf_counter())
        try:
            return ray.get(task, timeout=timeout)
        except GetTimeoutError:
            ray.cancel(task, force=True)  # it would keep the quiet resource from the next candidates
            raise TrainError(
                f"the latency timing did not end within {timeout:.0f} s (what was left of the model's "
                f"{work.spec.retrain.max_job_seconds:g} s, or at least {LATENCY_MIN_S:g} s); is a node with the "
                f"'{LATENCY_RESOURCE}' resource alive?"
            ) from None
