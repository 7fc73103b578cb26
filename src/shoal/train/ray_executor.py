"""The Ray executor (`shoal train --executor ray`, `shoal worker --executor ray`): each (model, family) fit on a Ray
cluster. Imported only when chosen: `pip install 'shoal[ray]'`.

Each family's CV search, final fit, audit and evaluation is one Ray task declaring its CPUs and memory, spread over
the nodes. It writes nothing shared: it stages the artifact in a temporary folder of its node and sends the files
back with the results, so a task that Ray retries (its worker or node died) only computes the same answer again.
The trainer's process then writes the artifact into its staging folder, has the latency timed by a task on the
declared quiet resource (`shoal_latency`: one per node, one CPU), and registers the version: the gate and every
registry write happen there, one transaction per version, as with the local executor.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from shoal.families import get_family
from shoal.faults import PAUSE_AT_ENV, PAUSE_FILE_ENV
from shoal.registry.records import VersionMetrics
from shoal.train.candidates import Built, Job
from shoal.train.errors import TrainError
from shoal.train.executor import Fitted, Staging, Work, fit_families, timed_costs, without_bulk
from shoal.train.search import Failed

#: the custom resource a node declares for latency timing: `ray start ... --resources '{"shoal_latency": 1}'`
LATENCY_RESOURCE = "shoal_latency"
#: a task whose worker or node dies is run again this many times
MAX_RETRIES = 3
Files = dict[str, bytes]


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
def _fit(work: Work, family: str, cpus: int) -> tuple[Fitted, Files, float]:
    """One family's search, final fit, audit and evaluation on this node, and the seconds it took here (keyed by
    model, dataset version and family: running it again gives the same answer and writes nothing shared). It uses
    the `cpus` processes it declared, and its worker exits after it (`max_calls=1`), its processes with it."""
    started = time.perf_counter()
    work = replace(work, families=[get_family(family)], settings=work.settings.model_copy(update={"n_jobs": cpus}))
    with tempfile.TemporaryDirectory(prefix="shoal-fit-") as folder:
        fitted = fit_families(work, _TemporaryStaging(Path(folder)))
        files = {name: _read(job.staged) for name, job in fitted.jobs.items()}
    fitted.jobs = {name: without_bulk(job) for name, job in fitted.jobs.items()}
    fitted.nodes = dict.fromkeys(fitted.jobs, ray.get_runtime_context().get_node_id())
    return fitted, files.get(family, {}), time.perf_counter() - started


@ray.remote(num_cpus=1, resources={LATENCY_RESOURCE: 1}, max_retries=MAX_RETRIES)
def _costs(work: Work, family: str, built: Built, files: Files, size_bytes: int) -> tuple[VersionMetrics, Any]:
    """The candidate's metrics with its latency timed here, on the node's quiet CPU."""
    with tempfile.TemporaryDirectory(prefix="shoal-latency-") as folder:
        _write(files, Path(folder))
        return timed_costs(work.task, get_family(family), built, Path(folder), work.test, work.settings, size_bytes)


class RayExecutor:
    """The Ray cluster at `address` (default: `RAY_ADDRESS`, else the cluster this node belongs to). Each fit task
    declares `cpus` CPUs (its search's processes) and `memory_mb` of memory."""

    def __init__(self, address: str | None = None, cpus: int = 1, memory_mb: int = 1024) -> None:
        self.cpus, self.memory = cpus, memory_mb * 2**20
        self._put: tuple[Work, ray.ObjectRef] | None = None  # the model being trained, in the object store once
        self._deadline = float("inf")  # the end of the current job's budget (`fit` sets it)
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

    def _shared(self, work: Work) -> ray.ObjectRef:
        if self._put is None or self._put[0] is not work:
            self._put = (work, ray.put(work))
        return self._put[1]

    def fit(self, work: Work, staging: Staging) -> Fitted:
        """Every family as a task of its own, spread over the nodes; its artifact is staged here once it is back."""
        started = time.perf_counter()
        shared = self._shared(work)
        tasks = {
            family.name: _fit.options(
                num_cpus=self.cpus,
                memory=self.memory,
                scheduling_strategy="SPREAD",
                name=f"shoal-fit:{work.model}:{work.dataset_version}:{family.name}",
            ).remote(shared, family.name, self.cpus)
            for family in work.families
        }
        deadline = self._deadline = started + work.spec.retrain.max_job_seconds
        fitted = Fitted()
        pending = {task: name for name, task in tasks.items()}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, deadline - time.perf_counter()))
            if not done:  # past the budget: what still runs is cancelled
                for task, name in pending.items():
                    ray.cancel(task, force=True)
                    fitted.failed[name] = Failed(
                        f"the fit did not end within {work.spec.retrain.max_job_seconds:g} s", ""
                    )
                break
            name = pending.pop(done[0])
            try:
                part, files, seconds = ray.get(done[0])
            except RayError as error:  # its retries are spent (a worker or node died each time), or Ray broke
                fitted.failed[name] = Failed(f"{type(error).__name__}: {error}", "")
                continue
            # from submission to the result here, less the task's own seconds: scheduling, waiting for a CPU,
            # sending the data and the artifact, a worker's start
            fitted.overhead[name] = time.perf_counter() - started - seconds
            for family, job in part.jobs.items():
                try:
                    staged = staging.stage()
                    _write(files, staged)
                except OSError as error:
                    part.failed[family] = Failed(f"{type(error).__name__}: {error}", "")
                    continue
                fitted.jobs[family] = replace(job, staged=staged)
            for key in ("built", "failed", "search_seconds", "features_seconds", "nodes"):
                getattr(fitted, key).update(getattr(part, key))
            fitted.sampled = part.sampled if part.sampled is not None else fitted.sampled
        # registered in the families' order, as the local executor does, not in the order the tasks ended
        fitted.jobs = {f.name: fitted.jobs[f.name] for f in work.families if f.name in fitted.jobs}
        fitted.steps["ray_fits"] = time.perf_counter() - started
        return fitted

    def costs(self, work: Work, job: Job, built: Built, size_bytes: int) -> tuple[VersionMetrics, dict[str, float]]:
        """Timed on a node's quiet CPU, within what is left of the job's one budget (from the start of `fit`)."""
        task = _costs.remote(self._shared(work), job.family.name, built, _read(job.staged), size_bytes)
        try:
            return ray.get(task, timeout=max(1.0, self._deadline - time.perf_counter()))
        except GetTimeoutError:
            ray.cancel(task, force=True)  # it would keep the quiet resource from the next candidates
            raise TrainError(
                f"the latency timing did not end within the job's {work.spec.retrain.max_job_seconds:g} s; is a "
                f"node with the '{LATENCY_RESOURCE}' resource alive?"
            ) from None
