"""`train_models`: validated data -> every candidate family, trained and evaluated -> the gate, model by model.

A failing family or model is recorded in the event log with its error and never stops the others. A
(dataset version, family) already trained is reused, not trained twice.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from shoal import __version__, defaults, gate
from shoal.data.assembled import assembled
from shoal.data.sets import TestSet, TrainSet
from shoal.evaluate.evaluator import with_costs
from shoal.families import get_family
from shoal.families.base import FeatureFamily
from shoal.faults import checkpoint
from shoal.fleet import ModelSpec
from shoal.registry import PRODUCTION, Version
from shoal.registry.records import CrossValidation
from shoal.tasks import get_task
from shoal.train.candidates import Built, Job, build
from shoal.train.errors import TrainError
from shoal.train.search import Failed, search_many
from shoal.workspace import Workspace

Step = Callable[[str, str], None]  # (model, what is happening now)


@dataclass
class CandidateResult:
    family: str
    version: Version | None = None
    reused: bool = False
    skipped: str | None = None
    error: str | None = None
    seconds: float = 0.0
    #: where this family's time went, in seconds (`VersionMetrics.phases`, and register)
    phases: dict[str, float] = field(default_factory=dict)


@dataclass
class ModelReport:
    model: str
    dataset_version: str | None = None
    candidates: list[CandidateResult] = field(default_factory=list)
    decision: gate.Decision | None = None
    production: int | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    defaults: str | None = None  # which defaults were chosen from the data, and why
    #: the wall time of each step of this training, in order (`Timings`)
    phases: dict[str, float] = field(default_factory=dict)


class Timings:
    """Wall seconds of a training's consecutive steps: `lap(name)` ends the step running since the last lap."""

    def __init__(self, phases: dict[str, float]) -> None:
        self.phases = phases
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.last
        self.last = now


def budget_skip(family_name: str, spec: ModelSpec, n_rows: int) -> str | None:
    """Why a family cannot meet this model's budgets, from the family's declared costs (None: try it)."""
    family = get_family(family_name)
    expected_train = family.expected_train_seconds_per_1k_rows * n_rows / 1000
    reasons = gate.budget_problems(spec.gate, family.expected_p95_ms, family.expected_size_mb)
    if spec.max_train_seconds is not None and expected_train > spec.max_train_seconds:
        reasons.append(f"expected training {expected_train:.0f} s > budget {spec.max_train_seconds:g} s")
    return f"skipped {family_name}: declared cost over budget ({'; '.join(reasons)})" if reasons else None


@dataclass(frozen=True)
class ModelData:
    """A model's data as every candidate sees it."""

    dataset_version: str
    train: TrainSet
    test: TestSet
    notes: list[str]


def _load_data(ws: Workspace, name: str, spec: ModelSpec) -> ModelData:
    found = assembled(ws, name)
    if found is None:
        raise TrainError(f"model {name!r} has no data; add some with 'shoal ingest {name} FILE'")
    if found.test.empty:
        raise TrainError(f"model {name!r} has no test rows; ingest a drop with --split test or --split auto")
    task = get_task(spec.task)
    try:
        train = task.train_set(found.train, spec)
    except ValueError as error:
        raise TrainError(f"model {name!r} {error}") from None
    test = task.test_set(found.train, found.test, spec)
    test.judged_by = found.judged_by
    return ModelData(found.dataset_version, train, test, found.notes)


def candidate_families(spec: ModelSpec) -> list[str]:
    """The fleet's families, plus the task's serving floor when it is not listed: a model whose floor is a
    useful answer (a seasonal-naive forecast) always has a version to serve."""
    floor = get_task(spec.task).serving_floor
    return [*spec.families, *([floor] if floor is not None and floor not in spec.families else [])]


def _train_candidates(
    ws: Workspace, name: str, spec: ModelSpec, data: ModelData, step: Step, report: ModelReport, clock: Timings
) -> list[CandidateResult]:
    """Every candidate family on this data: reused when already trained, skipped when its declared costs are
    over budget, and isolated when it fails; the others are fitted together (`_fit_candidates`)."""
    registry = ws.registry
    existing = {v.family: v for v in registry.versions(name) if v.dataset_version == data.dataset_version}
    results = []
    for family_name in candidate_families(spec):
        result = CandidateResult(family_name)
        results.append(result)
        if family_name in existing:
            result.version, result.reused = existing[family_name], True
            continue
        result.skipped = budget_skip(family_name, spec, len(data.train.inputs))
        if result.skipped:
            registry.record_event(name, "skipped", result.skipped, payload={"family": family_name})
    to_fit = [r for r in results if not r.reused and not r.skipped]
    if to_fit:
        step(name, f"training {', '.join(r.family for r in to_fit)}")
        _fit_candidates(ws, name, spec, data, to_fit, report, clock)
    return results


def _failed(ws: Workspace, name: str, result: CandidateResult, error: str, trace: str) -> None:
    result.error = error
    ws.registry.record_event(
        name, "failed", f"{result.family} failed: {error}", payload={"family": result.family, "traceback": trace}
    )


def _fit_candidates(
    ws: Workspace,
    name: str,
    spec: ModelSpec,
    data: ModelData,
    to_fit: list[CandidateResult],
    report: ModelReport,
    clock: Timings,
) -> None:
    """One search for all the families (sharing features where they can), their final fits, audits, artifacts,
    scores and peak RSS on the pool's processes; then, with the pool idle, each one's latency timed and its version
    registered, one after the other. Where the time went goes into `report` and each candidate's `phases`."""
    settings, task = ws.fleet.workspace, get_task(spec.task)
    by_name = {r.family: r for r in to_fit}
    families = [get_family(r.family) for r in to_fit]
    train, test = data.train, data.test
    started = time.perf_counter()
    try:
        searched = search_many(
            families,
            train.inputs,
            train.targets,
            test.labels,
            spec.metric,
            folds=spec.folds(len(train.inputs)),
            seed=settings.seed,
            n_jobs=settings.n_jobs,
            task=task,
            class_weight=getattr(spec, "class_weight", "none"),
            max_rows=spec.max_search_rows,
        )
    except Exception as error:  # the pool itself broke (a worker was killed): every family fails
        for result in to_fit:
            _failed(ws, name, result, f"{type(error).__name__}: {error}", traceback.format_exc())
        return
    search_seconds = time.perf_counter() - started
    clock.lap("search")
    sampled = next((len(r.rows) for r in searched.results.values() if r.rows is not None), None)
    if sampled is not None:
        report.notes.append(
            f"the search cross-validated a sample of {sampled:,} of the {len(train.inputs):,} training rows "
            f"(search_rows {spec.max_search_rows:,}); the label audit ran on it, the final fits on every row"
        )
    for family_name, failure in searched.failed.items():
        _failed(ws, name, by_name[family_name], failure.error, failure.traceback)
    jobs: list[Job] = []
    try:
        for family in families:
            if family.name in searched.failed:
                continue
            try:
                staged = ws.registry.artifacts.stage()
            except Exception as error:
                _failed(ws, name, by_name[family.name], f"{type(error).__name__}: {error}", traceback.format_exc())
                continue
            found = searched.results[family.name]
            if isinstance(family, FeatureFamily) and family.features_key in searched.features:
                shared = searched.features[family.features_key]
                start = _head_start(ws, name, family, shared[0], train, found.start)
                jobs.append(Job(family, found, shared, staged, *start))
            else:
                jobs.append(Job(family, found, None, staged))
        try:
            built = build(task, jobs, train, test, spec.metric, settings)
        except Exception as error:  # the pool itself broke
            for job in jobs:
                _failed(ws, name, by_name[job.family.name], f"{type(error).__name__}: {error}", traceback.format_exc())
            return
        clock.lap("final_fits")
        # the quiet phase: the pool is idle, so each candidate's latency is timed with nothing else running
        for job, done in zip(jobs, built, strict=True):
            result = by_name[job.family.name]
            if isinstance(done, Failed):
                _failed(ws, name, result, done.error, done.traceback)
                continue
            result.phases["search"] = job.found.seconds
            if isinstance(job.family, FeatureFamily) and job.family.features_key in searched.features_seconds:
                result.phases["shared_features"] = searched.features_seconds[job.family.features_key]
            try:
                result.version = _register(ws, name, spec, data, job, done, search_seconds, result.phases)
            except Exception as error:  # isolate: one family's failure never stops the others
                _failed(ws, name, result, f"{type(error).__name__}: {error}", traceback.format_exc())
            result.seconds = time.perf_counter() - started
        clock.lap("latency_and_register")
    finally:
        for job in jobs:
            ws.registry.artifacts.discard(job.staged)


def _head_start(
    ws: Workspace, name: str, family: FeatureFamily, featurizer: Any, train: TrainSet, searched: Any
) -> tuple[Any, int | None]:
    """Where `family`'s final fit may begin (`FeatureFamily.head_start`), and the version that solution came from:
    the production version's, when that version is of this family; else the search's (`searched`, its first fold's
    solution of the chosen setting; None: from zero). Only a shortcut, so a production artifact that does not load
    (the server and `shoal doctor` report that) leaves the fit to the search's start."""
    current = ws.registry.alias(name, PRODUCTION)
    version = ws.registry.version(name, current) if current is not None else None
    if version is None or version.family != family.name:
        return searched, None
    try:
        start = family.head_start(ws.load_predictor(version), featurizer, train.targets)
    except Exception:
        return searched, None
    return (start, version.number) if start is not None else (searched, None)


def _register(
    ws: Workspace,
    name: str,
    spec: ModelSpec,
    data: ModelData,
    job: Job,
    built: Built,
    search_seconds: float,
    phases: dict[str, float],
) -> Version:
    """Time the candidate's latency and register its version (`search_seconds`: the search's wall time, shared by
    the families searched together, counts in each one's training time). `phases` gets where its time went."""
    settings, task = ws.fleet.workspace, get_task(spec.task)
    started = time.perf_counter()
    predictor = built.predictor or job.family.load(job.staged)
    size = sum(p.stat().st_size for p in job.staged.rglob("*") if p.is_file())
    timing = time.perf_counter()
    scored = with_costs(task, predictor, built.scores, data.test, settings, size_bytes=size, peak_rss=built.peak_rss_mb)
    phases.update(built.phases)
    if built.predictor is None:  # not portable between processes: loaded here from its staging folder
        phases["artifact_load"] = timing - started
    phases["latency"] = time.perf_counter() - timing
    metrics = replace(
        scored,
        train_seconds=search_seconds + built.fit_seconds,
        eval_seconds=built.eval_seconds + time.perf_counter() - started,
        cv=CrossValidation(
            spec.folds(len(data.train.inputs)),
            job.found.cv_score,
            job.found.scores,
            None if job.found.rows is None else len(job.found.rows),
        ),
        n_train=len(data.train.inputs),
        fit_started_from=job.started_from,
        phases=dict(phases),
    )
    checkpoint("artifact_written")
    registering = time.perf_counter()
    version, _ = ws.registry.register_version(
        name,
        family=job.family.name,
        params=job.found.params,
        dataset_version=data.dataset_version,
        code_version=f"shoal {__version__}",
        metrics=metrics,
        staged=job.staged,
        test_hash=data.test.hash,
        label_error_rate=built.error_rate,
    )
    phases["register"] = time.perf_counter() - registering
    checkpoint("registered")
    return version


def train_model(ws: Workspace, name: str, step: Step = lambda model, what: None) -> ModelReport:
    """data -> the model's defaults (chosen from the data at its first training, then kept) -> candidates -> gate
    (after removing what killed trainings left in the staging area)."""
    started = time.perf_counter()
    phases: dict[str, float] = {}
    clock = Timings(phases)
    fleet_spec = ws.model(name)
    ws.registry.artifacts.clean_stale_staging()
    step(name, "loading data")
    if getattr(fleet_spec, "llm", None) is not None and assembled(ws, name) is None:
        return _cold_start(ws, name, started)
    data = _load_data(ws, name, fleet_spec)
    settled = defaults.settle(ws, name, fleet_spec, data.train)
    spec = settled.spec
    report = ModelReport(name, data.dataset_version, notes=data.notes, phases=phases)
    report.defaults = defaults.describe(fleet_spec, settled.kept)
    clock.lap("load_data")
    report.candidates = _train_candidates(ws, name, spec, data, step, report, clock)
    versions = [c.version for c in report.candidates if c.version is not None]
    if versions:
        step(name, "gating")
        report.decision = gate.run(ws, name, spec, versions, data.train, data.test)
        clock.lap("gate")
    report.production = ws.registry.alias(name, PRODUCTION)
    report.seconds = time.perf_counter() - started
    return report


def _cold_start(ws: Workspace, name: str, started: float) -> ModelReport:
    """A model with an `llm:` key and no data yet: its LLM version answers (`shoal.coldstart.start`)."""
    from shoal import coldstart

    report = ModelReport(name)
    version = coldstart.start(ws, name)
    report.production = ws.registry.alias(name, PRODUCTION)
    if version is not None:
        report.notes.append(
            f"cold start: no data yet; v{version.number}, the LLM, answers until a small one is promoted"
        )
    else:
        report.notes.append("cold start: no data yet; the LLM answers until a small version is promoted")
    report.seconds = time.perf_counter() - started
    return report


def train_models(
    ws: Workspace, names: list[str] | None = None, step: Step = lambda model, what: None
) -> list[ModelReport]:
    reports = []
    for name in names or list(ws.fleet.models):
        try:
            reports.append(train_model(ws, name, step))
        except Exception as error:  # isolate: one model's failure never stops the others
            message = f"{type(error).__name__}: {error}" if not isinstance(error, TrainError) else str(error)
            if name in ws.registry.model_names():
                ws.registry.record_event(name, "failed", f"training failed: {message}")
            reports.append(ModelReport(name, error=message))
        step(name, "done")
    return reports
