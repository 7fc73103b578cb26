"""`train_models`: validated data -> every candidate family, trained and evaluated -> the gate, model by model.

A failing family or model is recorded in the event log with its error and never stops the others. A
(dataset version, family) already trained is reused, not trained twice.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from shoal import __version__, gate
from shoal.data.sets import TestSet, TrainSet
from shoal.evaluate.evaluator import evaluate
from shoal.families import get_family
from shoal.families.base import write_json
from shoal.faults import checkpoint
from shoal.fleet import ModelSpec
from shoal.registry import PRODUCTION, Version
from shoal.registry.artifacts import full_disk_as_error
from shoal.registry.records import CrossValidation
from shoal.tasks import get_task
from shoal.train.errors import TrainError
from shoal.train.search import search
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


def budget_skip(family_name: str, spec: ModelSpec, n_rows: int) -> str | None:
    """Why a family cannot meet this model's budgets, from the family's declared costs (None: try it)."""
    family = get_family(family_name)
    expected_train = family.expected_train_seconds_per_1k_rows * n_rows / 1000
    reasons = gate.budget_problems(spec.gate, family.expected_p95_ms, family.expected_size_mb)
    if spec.max_train_seconds is not None and expected_train > spec.max_train_seconds:
        reasons.append(f"expected training {expected_train:.0f} s > budget {spec.max_train_seconds:g} s")
    return f"skipped {family_name}: declared cost over budget ({'; '.join(reasons)})" if reasons else None


def _fit_candidate(
    ws: Workspace,
    name: str,
    spec: ModelSpec,
    family_name: str,
    dataset_version: str,
    train: TrainSet,
    test: TestSet,
) -> Version:
    settings = ws.fleet.workspace
    task = get_task(spec.task)
    family = get_family(family_name)
    started = time.perf_counter()
    found = search(
        family,
        train.inputs,
        train.targets,
        test.labels,
        spec.metric,
        folds=spec.cv_folds,
        seed=settings.seed,
        n_jobs=settings.n_jobs,
        task=task,
    )
    predictor = family.fit(train.inputs, train.targets, found.params, settings.seed)
    error_rate, files = task.after_fit(predictor, train, found.oof, test.labels)
    train_seconds = time.perf_counter() - started
    staged = ws.registry.artifacts.stage()
    try:
        with full_disk_as_error(staged, f"the {family_name} artifact"):
            predictor.save(staged)
            for file_name, content in files.items():
                write_json(staged / file_name, content)
        size = sum(p.stat().st_size for p in staged.rglob("*") if p.is_file())
        evaluated = time.perf_counter()
        scored, _ = evaluate(task, predictor, family_name, staged, test, spec.metric, settings, size)
        metrics = replace(
            scored,
            train_seconds=train_seconds,
            eval_seconds=time.perf_counter() - evaluated,
            cv=CrossValidation(spec.cv_folds, found.cv_score, found.scores),
            n_train=len(train.inputs),
        )
        checkpoint("artifact_written")
        version, _ = ws.registry.register_version(
            name,
            family=family_name,
            params=found.params,
            dataset_version=dataset_version,
            code_version=f"shoal {__version__}",
            metrics=metrics,
            staged=staged,
            test_hash=test.hash,
            label_error_rate=error_rate,
        )
        checkpoint("registered")
        return version
    finally:
        ws.registry.artifacts.discard(staged)


@dataclass(frozen=True)
class ModelData:
    """A model's data as every candidate sees it."""

    dataset_version: str
    train: TrainSet
    test: TestSet
    notes: list[str]


def _load_data(ws: Workspace, name: str, spec: ModelSpec) -> ModelData:
    registry = ws.registry
    drops = registry.drops(name) if name in registry.model_names() else []
    if not drops:
        raise TrainError(f"model {name!r} has no data; add some with 'shoal ingest {name} FILE'")
    task = get_task(spec.task)
    train_frame, test_frame, notes = task.assemble(registry.load_drops(drops), spec)
    if test_frame.empty:
        raise TrainError(f"model {name!r} has no test rows; ingest a drop with --split test or --split auto")
    try:
        train = task.train_set(train_frame, spec)
    except ValueError as error:
        raise TrainError(f"model {name!r} {error}") from None
    test = task.test_set(train_frame, test_frame, spec)
    return ModelData(registry.dataset_version(name, drops), train, test, notes)


def candidate_families(spec: ModelSpec) -> list[str]:
    """The fleet's families, plus the task's serving floor when it is not listed: a model whose floor is a
    useful answer (a seasonal-naive forecast) always has a version to serve."""
    floor = get_task(spec.task).serving_floor
    return [*spec.families, *([floor] if floor is not None and floor not in spec.families else [])]


def _train_candidates(ws: Workspace, name: str, spec: ModelSpec, data: ModelData, step: Step) -> list[CandidateResult]:
    """Every candidate family on this data: reused when already trained, skipped when its declared costs are
    over budget, and isolated when it fails."""
    registry = ws.registry
    existing = {v.family: v for v in registry.versions(name) if v.dataset_version == data.dataset_version}
    results = []
    for family_name in candidate_families(spec):
        result = CandidateResult(family_name)
        results.append(result)
        t0 = time.perf_counter()
        if family_name in existing:
            result.version, result.reused = existing[family_name], True
            continue
        result.skipped = budget_skip(family_name, spec, len(data.train.inputs))
        if result.skipped:
            registry.record_event(name, "skipped", result.skipped, payload={"family": family_name})
            continue
        step(name, f"training {family_name}")
        try:
            result.version = _fit_candidate(ws, name, spec, family_name, data.dataset_version, data.train, data.test)
        except Exception as error:  # isolate: one family's failure never stops the others
            result.error = f"{type(error).__name__}: {error}"
            registry.record_event(
                name,
                "failed",
                f"{family_name} failed: {result.error}",
                payload={"family": family_name, "traceback": traceback.format_exc()},
            )
        result.seconds = time.perf_counter() - t0
    return results


def train_model(ws: Workspace, name: str, step: Step = lambda model, what: None) -> ModelReport:
    """data -> candidates -> gate (after removing what killed trainings left in the staging area)."""
    started = time.perf_counter()
    spec = ws.model(name)
    ws.registry.artifacts.clean_stale_staging()
    step(name, "loading data")
    data = _load_data(ws, name, spec)
    report = ModelReport(name, data.dataset_version, notes=data.notes)
    report.candidates = _train_candidates(ws, name, spec, data, step)
    versions = [c.version for c in report.candidates if c.version is not None]
    if versions:
        step(name, "gating")
        report.decision = gate.run(ws, name, spec, versions, data.train, data.test)
    report.production = ws.registry.alias(name, PRODUCTION)
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
