"""`train_models`: validated data -> every candidate family -> evaluation -> gate, model by model.

A failing family or model is recorded in the event log with its error and never stops the others. A
(dataset version, family) already trained is reused, not trained twice.
"""

from __future__ import annotations

import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shoal import __version__
from shoal.evaluate import evaluate
from shoal.families import get_family
from shoal.families.base import write_json
from shoal.fleet import ModelSpec
from shoal.gate import Contender, Decision, budget_problems, decide, refreshed
from shoal.registry import PRODUCTION, Version
from shoal.tasks import TaskKind, TestSet, TrainSet, get_task
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
    decision: Decision | None = None
    production: int | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def budget_skip(family_name: str, spec: ModelSpec, n_rows: int) -> str | None:
    """Why a family cannot meet this model's budgets, from the family's declared costs (None: try it)."""
    family = get_family(family_name)
    expected_train = family.expected_train_seconds_per_1k_rows * n_rows / 1000
    reasons = budget_problems(spec.gate, family.expected_p95_ms, family.expected_size_mb)
    if spec.max_train_seconds is not None and expected_train > spec.max_train_seconds:
        reasons.append(f"expected training {expected_train:.0f} s > budget {spec.max_train_seconds:g} s")
    return f"skipped {family_name}: declared cost over budget ({'; '.join(reasons)})" if reasons else None


def quantization_problem(version: Version, siblings: dict[str, Version], spec: ModelSpec) -> str | None:
    """A quantized variant is eligible only within `quantization_tolerance` of its full-precision sibling."""
    base = get_family(version.family).quantized_from
    if base is None or base not in siblings:
        return None
    better = get_task(spec.task).better
    loss = better(spec.metric, siblings[base].metrics[spec.metric]) - better(spec.metric, version.metrics[spec.metric])
    if loss > spec.quantization_tolerance:
        return f"v{version.number} ({version.family}) loses {loss:.4f} {spec.metric} against {base}"
    return None


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
        predictor.save(staged)
        for file_name, content in files.items():
            write_json(staged / file_name, content)
        size = sum(p.stat().st_size for p in staged.rglob("*") if p.is_file())
        evaluated = time.perf_counter()
        metrics, _ = evaluate(task, predictor, family_name, staged, test, spec.metric, settings, size)
        metrics["train_seconds"] = train_seconds
        metrics["eval_seconds"] = time.perf_counter() - evaluated
        metrics["cv"] = {"folds": spec.cv_folds, "score": found.cv_score, "grid": found.scores}
        metrics["n_train"] = len(train.inputs)
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
        return version
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _contender(ws: Workspace, task: TaskKind, version: Version, test: TestSet) -> Contender:
    """A version re-scored on the current test set (never its cached numbers)."""
    outputs = task.gate_outputs(ws.load_predictor(version), test)
    profile = version.metrics["profile"]
    return Contender(
        f"v{version.number}", outputs, profile["p95_ms_batch1"], version.size_bytes / 1e6, profile["cost_per_million"]
    )


def _cost(version: Version) -> tuple[float, float]:
    profile = version.metrics["profile"]
    return profile["cost_per_million"], version.size_bytes


def _gate(
    ws: Workspace, name: str, spec: ModelSpec, candidates: list[Version], train: TrainSet, test: TestSet
) -> Decision | None:
    registry, settings = ws.registry, ws.fleet.workspace
    task = get_task(spec.task)
    siblings = {v.family: v for v in candidates}
    eligible = []
    for v in candidates:
        problem = quantization_problem(v, siblings, spec)
        if problem:
            registry.record_event(name, "ineligible", problem, version=v.number)
        elif not budget_problems(spec.gate, v.metrics["profile"]["p95_ms_batch1"], v.size_bytes / 1e6):
            eligible.append(v)
    pool = eligible or candidates
    best = max(
        pool,
        key=lambda v: (round(task.better(spec.metric, v.metrics[spec.metric]), 9), tuple(-c for c in _cost(v))),
    )
    current = registry.alias(name, PRODUCTION)
    if current == best.number:
        registry.record_event(name, "rejected", f"v{best.number} is already in production", version=best.number)
        return None
    champion = (
        _contender(ws, task, registry.version(name, current), test)
        if current is not None
        else Contender(task.floor_name, task.floor(train, test), 0.0, 0.0, 0.0)
    )
    challenger = _contender(ws, task, best, test)
    evaluation = settings.evaluation
    stats = task.paired_test(
        test,
        challenger.predictions,
        champion.predictions,
        spec.metric,
        bootstrap=evaluation.bootstrap,
        seed=settings.seed,
    )
    decision = decide(spec.gate, spec.metric, challenger, champion, stats)
    if not decision.promote and current is not None:
        fresh = _refresh(task, registry.version(name, current), siblings, test)
        if fresh is not None:
            best, decision = fresh, refreshed(decision, fresh.number, fresh.family, current)
    payload: dict[str, Any] = {"decision": decision.as_dict(), "champion": current}
    if decision.promote:
        registry.set_alias(name, best.number, actor="gate", reason=decision.reason, payload=payload)
    else:
        registry.record_event(name, "rejected", decision.reason, version=best.number, payload=payload)
    return decision


def _refresh(task: TaskKind, champion: Version, siblings: dict[str, Version], test: TestSet) -> Version | None:
    """The champion's own family refit on the current data, when the champion's output is stale (a forecast
    that starts before the latest observation) and no other candidate beat it."""
    fresh = siblings.get(champion.family)
    if fresh is None or fresh.number == champion.number or not task.is_stale(champion.metrics, test):
        return None
    return fresh


def train_model(ws: Workspace, name: str, step: Step = lambda model, what: None) -> ModelReport:
    started = time.perf_counter()
    report = ModelReport(name)
    spec = ws.model(name)
    registry = ws.registry
    step(name, "loading data")
    drops = registry.drops(name) if name in registry.model_names() else []
    if not drops:
        raise TrainError(f"model {name!r} has no data; add some with 'shoal ingest {name} FILE'")
    report.dataset_version = registry.dataset_version(name, drops)
    task = get_task(spec.task)
    train_frame, test_frame, report.notes = task.assemble(registry.load_drops(drops), spec)
    if test_frame.empty:
        raise TrainError(f"model {name!r} has no test rows; ingest a drop with --split test or --split auto")
    try:
        train = task.train_set(train_frame, spec)
    except ValueError as error:
        raise TrainError(f"model {name!r} {error}") from None
    test = task.test_set(train_frame, test_frame, spec)
    existing = {v.family: v for v in registry.versions(name) if v.dataset_version == report.dataset_version}
    for family_name in spec.families:
        result = CandidateResult(family_name)
        report.candidates.append(result)
        t0 = time.perf_counter()
        if family_name in existing:
            result.version, result.reused = existing[family_name], True
            continue
        result.skipped = budget_skip(family_name, spec, len(train.inputs))
        if result.skipped:
            registry.record_event(name, "skipped", result.skipped, payload={"family": family_name})
            continue
        step(name, f"training {family_name}")
        try:
            result.version = _fit_candidate(ws, name, spec, family_name, report.dataset_version, train, test)
        except Exception as error:  # isolate: one family's failure never stops the others
            result.error = f"{type(error).__name__}: {error}"
            registry.record_event(
                name,
                "failed",
                f"{family_name} failed: {result.error}",
                payload={"family": family_name, "traceback": traceback.format_exc()},
            )
        result.seconds = time.perf_counter() - t0
    versions = [c.version for c in report.candidates if c.version is not None]
    if versions:
        step(name, "gating")
        report.decision = _gate(ws, name, spec, versions, train, test)
    report.production = registry.alias(name, PRODUCTION)
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
