"""Where a model's candidates are fitted and timed: here, on the training pool (the default), or on a Ray cluster.

The trainer hands an executor one model's families and data (`Work`). The executor answers each family's search
result and final fit, its artifact in a staging folder of the trainer's process (`submit` -> a `Pending` whose call
gives the `Fitted`), then, one candidate at a time, its metrics with the latency timed on a quiet CPU (`costs`). The
trainer submits `models_at_once` models' fits before it waits for the first model's (the local executor: one, so
it fits lazily, model by model; Ray: many, so a fleet's fits spread over the cluster). The gate and every registry
write stay in the trainer's process, whichever executor fitted the candidates.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shoal.data.sets import TestSet, TrainSet
from shoal.evaluate.evaluator import with_costs
from shoal.families import Family, Predictor
from shoal.families.base import FeatureFamily
from shoal.fleet import ModelSpec, WorkspaceSpec
from shoal.registry.records import VersionMetrics
from shoal.tasks.base import TaskKind
from shoal.train.candidates import Built, Job, build
from shoal.train.errors import TrainError
from shoal.train.search import Failed, search_many

if TYPE_CHECKING:
    from shoal.registry import Registry
    from shoal.train.ray_executor import RayExecutor

LOCAL, RAY = "local", "ray"
EXECUTORS = (LOCAL, RAY)


@dataclass(frozen=True)
class Work:
    """One model's candidates to fit: its families and data, and the production version's predictor by family (the
    solution a `FeatureFamily`'s final fit may begin at, `FeatureFamily.head_start`) with its version number."""

    model: str
    dataset_version: str
    task: TaskKind
    families: list[Family]
    train: TrainSet
    test: TestSet
    spec: ModelSpec
    settings: WorkspaceSpec
    production: dict[str, tuple[Predictor, int]] = field(default_factory=dict)


@dataclass
class Fitted:
    """A model's candidates searched and fitted: each family's job (search result, staging folder, head start) and
    built candidate, or why it failed; the search's wall time each family's training counts, the seconds of the
    features it shared, how many rows the search sampled, and where each family was fitted."""

    jobs: dict[str, Job] = field(default_factory=dict)
    built: dict[str, Built] = field(default_factory=dict)
    failed: dict[str, Failed] = field(default_factory=dict)
    search_seconds: dict[str, float] = field(default_factory=dict)
    features_seconds: dict[str, float] = field(default_factory=dict)
    sampled: int | None = None
    nodes: dict[str, str] = field(default_factory=dict)
    #: by family, the seconds a remote fit cost beyond its own work (`ray_overhead` in the version's phases)
    overhead: dict[str, float] = field(default_factory=dict)
    #: the wall seconds of the fitting's steps, in order (`ModelReport.phases`)
    steps: dict[str, float] = field(default_factory=dict)


class Staging(Protocol):
    """Private folders for artifacts not committed yet (`ArtifactStore.stage` / `discard`)."""

    def stage(self) -> Path: ...

    def discard(self, staged: Path) -> None: ...


#: a model's fits submitted: calling it waits for them and answers the `Fitted`
Pending = Callable[[], Fitted]


class Executor(Protocol):
    #: how many models the trainer submits (`submit`) before it waits for the first one's fits
    models_at_once: int

    def submit(self, work: Work, staging: Staging) -> Pending: ...

    def costs(self, work: Work, job: Job, built: Built, size_bytes: int) -> tuple[VersionMetrics, dict[str, float]]:
        """The candidate's metrics with its latency timed in a quiet phase, and the seconds of `artifact_load` (when
        it was loaded from its folder) and `latency`."""
        ...


def _failure(error: Exception) -> Failed:
    return Failed(f"{type(error).__name__}: {error}", traceback.format_exc())


def fit_families(work: Work, staging: Staging) -> Fitted:
    """One search for all of `work`'s families (sharing features where they can), then their final fits, audits,
    artifacts (in `staging`), scores and peak RSS, on `workspace.n_jobs` processes. A failing family never stops the
    others; a broken pool fails every family."""
    spec, train, test = work.spec, work.train, work.test
    names = [family.name for family in work.families]
    started = time.perf_counter()
    try:
        searched = search_many(
            work.families,
            train.inputs,
            train.targets,
            test.labels,
            spec.metric,
            folds=spec.folds(len(train.inputs)),
            seed=work.settings.seed,
            n_jobs=work.settings.n_jobs,
            task=work.task,
            class_weight=getattr(spec, "class_weight", "none"),
            max_rows=spec.max_search_rows,
        )
    except Exception as error:  # the pool itself broke (a worker was killed): every family fails
        return Fitted(failed=dict.fromkeys(names, _failure(error)))
    seconds = time.perf_counter() - started
    fitted = Fitted(failed=dict(searched.failed), search_seconds=dict.fromkeys(names, seconds))
    fitted.steps["search"] = seconds
    fitted.sampled = next((len(r.rows) for r in searched.results.values() if r.rows is not None), None)
    jobs: list[Job] = []
    for family in work.families:
        if family.name in searched.failed:
            continue
        try:
            staged = staging.stage()
        except Exception as error:
            fitted.failed[family.name] = _failure(error)
            continue
        found = searched.results[family.name]
        if isinstance(family, FeatureFamily) and family.features_key in searched.features:
            shared = searched.features[family.features_key]
            fitted.features_seconds[family.name] = searched.features_seconds[family.features_key]
            jobs.append(Job(family, found, shared, staged, *_head_start(work, family, shared[0], found.start)))
        else:
            jobs.append(Job(family, found, None, staged))
    try:
        built: list[Built | Failed] = build(work.task, jobs, train, test, spec.metric, work.settings)
    except Exception as error:  # the pool itself broke
        built = [_failure(error)] * len(jobs)
    fitted.steps["final_fits"] = time.perf_counter() - started - seconds
    for job, done in zip(jobs, built, strict=True):
        if isinstance(done, Failed):
            fitted.failed[job.family.name] = done
            staging.discard(job.staged)
        else:
            fitted.jobs[job.family.name], fitted.built[job.family.name] = job, done
    return fitted


def _head_start(work: Work, family: FeatureFamily, featurizer: Any, searched: Any) -> tuple[Any, int | None]:
    """Where `family`'s final fit may begin, and the version that solution came from: the production version's
    solution moved onto the new features, when that version is of this family; else the search's (`searched`, its
    first fold's solution of the chosen setting; None: from zero). Only a shortcut, so an error means the search's."""
    if family.name not in work.production:
        return searched, None
    predictor, number = work.production[family.name]
    try:
        start = family.head_start(predictor, featurizer, work.train.targets)
    except Exception:
        return searched, None
    return (start, number) if start is not None else (searched, None)


def timed_costs(
    task: TaskKind,
    family: Family,
    built: Built,
    staged: Path,
    test: TestSet,
    settings: WorkspaceSpec,
    size_bytes: int,
) -> tuple[VersionMetrics, dict[str, float]]:
    """`with_costs` for a built candidate (loaded from `staged` when its predictor did not travel), timed."""
    started = time.perf_counter()
    predictor = built.predictor or family.load(staged)
    timing = time.perf_counter()
    peak = built.peak_rss_mb
    metrics = with_costs(task, predictor, built.scores, test, settings, size_bytes=size_bytes, peak_rss=peak)
    phases = {} if built.predictor is not None else {"artifact_load": timing - started}
    phases["latency"] = time.perf_counter() - timing
    return metrics, phases


class LocalExecutor:
    """This process and its training pool (`workspace.n_jobs` processes): the default. A model's fits run when the
    trainer asks for them, one model at a time."""

    models_at_once = 1

    def submit(self, work: Work, staging: Staging) -> Pending:
        return lambda: fit_families(work, staging)

    def costs(self, work: Work, job: Job, built: Built, size_bytes: int) -> tuple[VersionMetrics, dict[str, float]]:
        # the pool is idle: nothing else runs while the latency is timed
        return timed_costs(work.task, job.family, built, job.staged, work.test, work.settings, size_bytes)


def open_executor(kind: str = LOCAL, address: str | None = None) -> LocalExecutor | RayExecutor:
    """The executor named `kind` (`local`, or `ray` on the cluster at `address`; Ray is imported only then)."""
    if kind == LOCAL:
        if address is not None:
            raise TrainError("--address names a Ray cluster: use it with --executor ray")
        return LocalExecutor()
    if kind == RAY:
        from shoal.train.ray_executor import RayExecutor

        return RayExecutor(address)
    raise TrainError(f"executor {kind!r} is not one of {', '.join(EXECUTORS)}")


def without_bulk(job: Job) -> Job:
    """`job` as the trainer still needs it once fitted: its search's result without the out-of-fold outputs, and no
    features or head start (what a remote fit sends back)."""
    return replace(job, found=replace(job.found, oof=job.found.oof[:0], start=None), features=None, start=None)


def comparable_versions(registry: Registry, models: list[str]) -> dict[str, Any]:
    """Each model's versions as the figures that must not depend on the executor that fitted them (number, family,
    dataset version, parameters, test score and its CI, CV score), and its production version: two executors
    trained the same fleet alike when these are equal."""
    from shoal.registry import PRODUCTION

    found: dict[str, Any] = {}
    for model in models:
        found[model] = {
            "production": registry.alias(model, PRODUCTION),
            "versions": sorted(
                (
                    v.number,
                    v.family,
                    v.dataset_version,
                    json.dumps(v.params, sort_keys=True),
                    v.metrics.value,
                    tuple(v.metrics.ci),
                    v.metrics.cv.score if v.metrics.cv else None,
                )
                for v in registry.versions(model)
            ),
        }
    return found
