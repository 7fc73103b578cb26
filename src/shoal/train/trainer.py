"""`train_models`: validated data -> every candidate family, trained and evaluated -> the gate, model by model.

A failing family or model is recorded in the event log with its error and never stops the others. A
(dataset version, family) already trained is reused, not trained twice.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from shoal import __version__, defaults, gate
from shoal.data.assembled import assembled
from shoal.data.sets import TestSet, TrainSet
from shoal.families import Family, Predictor, get_family
from shoal.families.base import FeatureFamily
from shoal.faults import checkpoint
from shoal.fleet import ModelSpec
from shoal.registry import PRODUCTION, Version
from shoal.registry.records import CrossValidation
from shoal.tasks import get_task
from shoal.train.candidates import Built, Job
from shoal.train.errors import TrainError
from shoal.train.executor import Executor, LocalExecutor, Pending, Work
from shoal.workspace import Workspace

Step = Callable[[str, str], None]  # (model, what is happening now)
T = TypeVar("T")


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
    node: str | None = None  # the Ray node that fitted it (None: this process)


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

    def took(self, steps: dict[str, float]) -> None:
        """The steps since the last lap took `steps` (their wall seconds, in order; measured by an executor)."""
        for name, seconds in steps.items():
            self.phases[name] = self.phases.get(name, 0.0) + seconds
        self.last = time.perf_counter()


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


def _candidates(ws: Workspace, name: str, spec: ModelSpec, data: ModelData) -> list[CandidateResult]:
    """Every candidate family on this data: reused when already trained, skipped when its declared costs are
    over budget; the others are left to fit (neither reused nor skipped)."""
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
    return results


def _failed(ws: Workspace, name: str, result: CandidateResult, error: str, trace: str) -> None:
    result.error = error
    ws.registry.record_event(
        name, "failed", f"{result.family} failed: {error}", payload={"family": result.family, "traceback": trace}
    )


@dataclass
class _Begun:
    """A model whose candidates' fits are submitted to the executor (`pending`; None: nothing to fit)."""

    spec: ModelSpec
    data: ModelData
    report: ModelReport
    clock: Timings
    started: float
    work: Work | None = None
    pending: Pending | None = None


def _submit(ws: Workspace, name: str, begun: _Begun, to_fit: list[CandidateResult], executor: Executor) -> None:
    """The candidates' search, final fits, audits, artifacts, scores and peak RSS, submitted to the executor."""
    families = [get_family(r.family) for r in to_fit]
    data = begun.data
    begun.work = Work(
        name,
        data.dataset_version,
        get_task(begun.spec.task),
        families,
        data.train,
        data.test,
        begun.spec,
        ws.fleet.workspace,
        _production(ws, name, families),
    )
    begun.clock.lap("prepare")  # the version lookups and the production version's load, before the executor's steps
    begun.pending = executor.submit(begun.work, ws.registry.artifacts)


def _fit_candidates(ws: Workspace, name: str, begun: _Begun, executor: Executor) -> None:
    """The submitted fits' results; then, with nothing else fitting, each candidate's latency timed and its version
    registered here, one after the other. Where the time went goes into the report and each candidate's `phases`."""
    assert begun.work is not None and begun.pending is not None
    report, clock, spec, data, work = begun.report, begun.clock, begun.spec, begun.data, begun.work
    by_name = {r.family: r for r in report.candidates if not r.reused and not r.skipped}
    started = time.perf_counter()
    fitted = begun.pending()
    clock.took(fitted.steps)
    if fitted.sampled is not None:
        report.notes.append(
            f"the search cross-validated a sample of {fitted.sampled:,} of the {len(data.train.inputs):,} training "
            f"rows (search_rows {spec.max_search_rows:,}); the label audit ran on it, the final fits on every row"
        )
    for family_name, failure in fitted.failed.items():
        _failed(ws, name, by_name[family_name], failure.error, failure.traceback)
    try:
        # the quiet phase: nothing is fitting, so each candidate's latency is timed with nothing else running
        for family_name, job in fitted.jobs.items():
            result = by_name[family_name]
            result.node = fitted.nodes.get(family_name)
            result.phases["search"] = job.found.seconds
            if family_name in fitted.features_seconds:
                result.phases["shared_features"] = fitted.features_seconds[family_name]
            if family_name in fitted.overhead:
                result.phases["ray_overhead"] = fitted.overhead[family_name]
            try:
                built, search_seconds = fitted.built[family_name], fitted.search_seconds[family_name]
                result.version = _register(ws, work, job, built, search_seconds, result.phases, executor)
            except Exception as error:  # isolate: one family's failure never stops the others
                _failed(ws, name, result, f"{type(error).__name__}: {error}", traceback.format_exc())
            result.seconds = time.perf_counter() - started
        clock.lap("latency_and_register")
    finally:
        for job in fitted.jobs.values():
            ws.registry.artifacts.discard(job.staged)


def _production(ws: Workspace, name: str, families: list[Family]) -> dict[str, tuple[Predictor, int]]:
    """The production version's predictor and number, by family, when a `FeatureFamily` among `families` may begin
    its final fit at its solution (`FeatureFamily.head_start`). Only a shortcut, so a production artifact that does
    not load (the server and `shoal doctor` report that) leaves the fits to start from zero."""
    current = ws.registry.alias(name, PRODUCTION)
    version = ws.registry.version(name, current) if current is not None else None
    if version is None or not any(isinstance(f, FeatureFamily) and f.name == version.family for f in families):
        return {}
    try:
        return {version.family: (ws.load_predictor(version), version.number)}
    except Exception:
        return {}


def _register(
    ws: Workspace,
    work: Work,
    job: Job,
    built: Built,
    search_seconds: float,
    phases: dict[str, float],
    executor: Executor,
) -> Version:
    """Time the candidate's latency (on the executor's quiet CPU) and register its version (`search_seconds`: the
    search's wall time, shared by the families searched together, counts in each one's training time). `phases`
    gets where its time went."""
    spec, train = work.spec, work.train
    started = time.perf_counter()
    size = sum(p.stat().st_size for p in job.staged.rglob("*") if p.is_file())
    scored, timed = executor.costs(work, job, built, size)
    phases.update(built.phases)
    phases.update(timed)
    metrics = replace(
        scored,
        train_seconds=search_seconds + built.fit_seconds,
        eval_seconds=built.eval_seconds + time.perf_counter() - started,
        cv=CrossValidation(
            spec.folds(len(train.inputs)),
            job.found.cv_score,
            job.found.scores,
            None if job.found.rows is None else len(job.found.rows),
        ),
        n_train=len(train.inputs),
        fit_started_from=job.started_from,
        phases=dict(phases),
    )
    checkpoint("artifact_written")
    registering = time.perf_counter()
    version, _ = ws.registry.register_version(
        work.model,
        family=job.family.name,
        params=job.found.params,
        dataset_version=work.dataset_version,
        code_version=f"shoal {__version__}",
        metrics=metrics,
        staged=job.staged,
        test_hash=work.test.hash,
        label_error_rate=built.error_rate,
    )
    phases["register"] = time.perf_counter() - registering
    checkpoint("registered")
    return version


def train_model(
    ws: Workspace, name: str, step: Step = lambda model, what: None, executor: Executor | None = None
) -> ModelReport:
    """data -> the model's defaults (chosen from the data at its first training, then kept) -> candidates, fitted by
    `executor` (default: this process's training pool) -> gate (after removing what killed trainings left in the
    staging area)."""
    chosen = executor or LocalExecutor()
    begun = _begin(ws, name, step, chosen)
    return begun if isinstance(begun, ModelReport) else _finish(ws, name, begun, step, chosen)


def _begin(ws: Workspace, name: str, step: Step, executor: Executor) -> _Begun | ModelReport:
    """The model's data, defaults and candidates, its fits submitted to `executor` (a cold start: its report)."""
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
    report = ModelReport(name, data.dataset_version, notes=data.notes, phases=phases)
    report.defaults = defaults.describe(fleet_spec, settled.kept)
    clock.lap("load_data")
    begun = _Begun(settled.spec, data, report, clock, started)
    report.candidates = _candidates(ws, name, settled.spec, data)
    to_fit = [r for r in report.candidates if not r.reused and not r.skipped]
    if to_fit:
        step(name, f"training {', '.join(r.family for r in to_fit)}")
        _submit(ws, name, begun, to_fit, executor)
    return begun


def _finish(ws: Workspace, name: str, begun: _Begun, step: Step, executor: Executor) -> ModelReport:
    """The submitted fits registered, then the gate."""
    report = begun.report
    if begun.pending is not None:
        _fit_candidates(ws, name, begun, executor)
    versions = [c.version for c in report.candidates if c.version is not None]
    if versions:
        step(name, "gating")
        report.decision = gate.run(ws, name, begun.spec, versions, begun.data.train, begun.data.test)
        begun.clock.lap("gate")
    report.production = ws.registry.alias(name, PRODUCTION)
    report.seconds = time.perf_counter() - begun.started
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
    ws: Workspace,
    names: list[str] | None = None,
    step: Step = lambda model, what: None,
    executor: Executor | None = None,
) -> list[ModelReport]:
    """Each model trained, its failure isolated. The executor's `models_at_once` models' fits are submitted before
    the first of them is registered and gated (the local executor: one, so model after model; Ray: a batch whose
    fits spread over the cluster); registration and gates run here, model after model, in the fleet's order."""
    chosen = executor or LocalExecutor()
    names = names or list(ws.fleet.models)
    reports = []
    for first in range(0, len(names), chosen.models_at_once):
        batch = names[first : first + chosen.models_at_once]
        begun = [(name, _isolated(ws, name, lambda n: _begin(ws, n, step, chosen))) for name in batch]
        if len(begun) > 1:
            step(batch[0], f"waiting for the fits of {len(begun)} models")
        for name, started in begun:
            if isinstance(started, _Begun):
                reports.append(_isolated(ws, name, lambda n, b=started: _finish(ws, n, b, step, chosen)))
            else:
                reports.append(started)
            step(name, "done")
    return reports


def _isolated(ws: Workspace, name: str, train: Callable[[str], T]) -> T | ModelReport:
    """`train(name)`, or a report of its failure (recorded in the model's event log): one model's failure never stops
    the others."""
    try:
        return train(name)
    except Exception as error:
        message = f"{type(error).__name__}: {error}" if not isinstance(error, TrainError) else str(error)
        if name in ws.registry.model_names():
            ws.registry.record_event(name, "failed", f"training failed: {message}")
        return ModelReport(name, error=message)
