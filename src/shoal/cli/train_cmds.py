"""`shoal train`, `shoal eval`, `shoal versions`."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer
from rich.table import Table

from shoal.cli.common import (
    AddressOption,
    ExecutorOption,
    JsonOption,
    WorkspaceOption,
    console,
    errors,
    open_workspace,
    print_json,
)

if TYPE_CHECKING:
    from shoal.registry import Version
    from shoal.train.trainer import ModelReport
    from shoal.workspace import Workspace


def run_training(
    ws: Workspace, names: list[str], executor: str = "local", address: str | None = None, as_json: bool = False
) -> list[ModelReport]:
    """Train `names` (fitted by `executor`) with a progress bar, then print each model's candidates and gate
    decision (`as_json`: the bar on stderr, the reports as JSON on stdout)."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from shoal.train.executor import open_executor
    from shoal.train.trainer import train_models

    for name in names:
        ws.model(name)
    fits = open_executor(executor, address)
    total = sum(len(ws.model(name).families) + 2 for name in names)
    started = time.perf_counter()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    json_out = _json_stdout() if as_json else None
    with Progress(*columns, console=errors if as_json else console, transient=True) as progress:
        bar = progress.add_task("training", total=total)

        def step(model: str, what: str) -> None:
            progress.update(bar, description=f"{model}: {what}", advance=0 if what == "done" else 1)

        reports = train_models(ws, names, step, fits)
    if json_out is not None:
        print_json([_report_json(report) for report in reports], json_out)
        json_out.flush()
        return reports
    _print_reports(reports)
    console.print(f"trained {len(names)} model(s) in {time.perf_counter() - started:.1f} s")
    return reports


def _json_stdout() -> TextIO:
    """This process's stdout, for the JSON alone: from now on what anything else writes there — Ray's driver and
    its late notices (a retried task), the training pool's processes — goes to stderr."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return out


def train(
    models: Annotated[list[str] | None, typer.Argument(help="Models to train (default: every model).")] = None,
    workspace: WorkspaceOption = ".",
    executor: ExecutorOption = "local",
    address: AddressOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train every candidate family, evaluate each on the frozen test set, and gate the best."""
    ws = open_workspace(workspace)
    reports = run_training(ws, models or list(ws.fleet.models), executor, address, as_json)
    if any(r.error for r in reports):
        raise typer.Exit(1)


def _report_json(report: ModelReport) -> dict[str, Any]:
    """One model's training as `shoal train --json` prints it: each candidate's version (number, metric, CI), the Ray
    node that fitted it, the gate's decision and the production version."""
    candidates = [
        {
            "family": c.family,
            "version": c.version.number if c.version else None,
            "metric": c.version.metrics.value if c.version else None,
            "ci": list(c.version.metrics.ci) if c.version else None,
            "reused": c.reused,
            "skipped": c.skipped,
            "error": c.error,
            "node": c.node,
            "seconds": round(c.seconds, 3),
        }
        for c in report.candidates
    ]
    return {
        "model": report.model,
        "dataset_version": report.dataset_version,
        "candidates": candidates,
        "decision": report.decision.as_dict() if report.decision else None,
        "production": report.production,
        "error": report.error,
        "notes": report.notes,
        "seconds": round(report.seconds, 3),
        "phases": {step: round(seconds, 3) for step, seconds in report.phases.items()},
    }


def _print_reports(reports: list[ModelReport]) -> None:
    for report in reports:
        if report.error:
            console.print(f"[red]{report.model}: failed[/red]: {report.error}", highlight=False)
            continue
        if report.dataset_version is None:  # a cold start with no data: its LLM answers
            for note in report.notes:
                console.print(f"{report.model}: {note}", highlight=False)
            continue
        table = Table(
            "family",
            "version",
            "metric",
            "95% CI",
            "p95 ms (b=1)",
            "size MB",
            "train s",
            title=f"{report.model} (dataset {report.dataset_version})",
        )
        for c in report.candidates:
            if c.version is None:
                state = "[yellow]skipped[/yellow]" if c.skipped else "[red]failed[/red]"
                table.add_row(c.family, state, c.skipped or c.error or "", "", "", "", "")
                continue
            m = c.version.metrics
            table.add_row(
                c.family,
                f"v{c.version.number}" + (" (reused)" if c.reused else ""),
                f"{m.metric} {m.value:.4f}",
                f"{m.ci[0]:.4f}..{m.ci[1]:.4f}",
                f"{m.profile.p95_ms_batch1:.2f}",
                f"{c.version.size_bytes / 1e6:.2f}",
                f"{m.train_seconds or 0:.1f}",
            )
        console.print(table)
        _print_time(report)
        for note in report.notes:
            console.print(f"  note: {note}", highlight=False)
        if report.defaults:
            console.print(f"  defaults: {report.defaults}", highlight=False)
        if report.decision is not None:
            color = "green" if report.decision.promote else "yellow"
            console.print(f"  [{color}]gate[/{color}]: {report.decision.reason}", highlight=False)
        if report.production:
            console.print(f"  production: v{report.production}")
            continue
        advice = report.decision.advice if report.decision is not None else ()
        console.print("  production: none" + (" — no version beats the floor; what would help:" if advice else ""))
        for item in advice:
            console.print(f"    - {item}", highlight=False, markup=False)  # "shoal[embeddings]" is not markup


def _seconds(phases: dict[str, float]) -> str:
    return ", ".join(f"{key.replace('_', ' ')} {seconds:.1f} s" for key, seconds in phases.items())


def _print_time(report: ModelReport) -> None:
    """Where the training's time went: its steps' wall time, then each family's seconds per step (the pool's
    processes work side by side, so a family's steps overlap the others')."""
    if not report.phases:
        return
    console.print(f"  time: {report.seconds:.1f} s — {_seconds(report.phases)}", highlight=False)
    trained = [c for c in report.candidates if c.phases]
    if not trained:
        return
    steps = list(dict.fromkeys(key for c in trained for key in c.phases))
    table = Table("step", *(c.family for c in trained), title="  seconds per family (side by side on the pool)")
    for step in steps:
        name = "features (shared)" if step == "shared_features" else step.replace("_", " ")
        table.add_row(name, *(f"{c.phases[step]:.1f}" if step in c.phases else "" for c in trained))
    console.print(table)


def _resolve(ws: Workspace, model: str, version: int | None) -> Version:
    from shoal.advice import no_production
    from shoal.registry import PRODUCTION, RegistryError

    number = version if version is not None else ws.registry.alias(model, PRODUCTION)
    if number is None:
        why = no_production(ws.registry, model) or f"model {model!r} has no production version; run 'shoal train'"
        raise RegistryError(f"{why}; name a version to see its evaluation")
    return ws.registry.version(model, number)


def eval_report(v: Version) -> dict[str, Any]:
    """A version's evaluation keyed by the metric names of the fleet file."""
    m = v.metrics
    timings = {"train_seconds": m.train_seconds, "eval_seconds": m.eval_seconds}
    numbers = {k: x for k, x in {**m.scores, **timings}.items() if isinstance(x, int | float)}
    return {
        "model": v.model,
        "version": v.number,
        "family": v.family,
        "params": v.params,
        "dataset_version": v.dataset_version,
        "test_hash": v.test_hash,
        "metric": m.metric,
        **numbers,
        "ci": m.ci,
        "per_class": m.scores.get("per_class", {}),
        "confusion": m.scores.get("confusion"),
        "profile": asdict(m.profile),
        "phases": m.phases,
        "label_error_rate": v.label_error_rate,
        "size_bytes": v.size_bytes,
        "n_test": m.n_test,
        "n_train": m.n_train,
        "created_at": v.created_at.isoformat(),
    }


def eval_(
    model: Annotated[str | None, typer.Argument(help="Model name.")] = None,
    version: Annotated[int | None, typer.Argument(help="Version number (default: production).")] = None,
    workspace: WorkspaceOption = ".",
    as_json: JsonOption = False,
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", help="Judge this pipeline end to end instead of one model.")
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="The pipeline's test file (default: its 'test:').", dir_okay=False)
    ] = None,
) -> None:
    """Show a version's evaluation on the frozen test set: quality with CIs, latency, size, cost; for a model with
    a cascade, also the cascade of the production versions: accuracy against the fraction deferred, and its cost.
    With --pipeline, a pipeline's end-to-end and per-step accuracy on its test file, with the production versions."""
    if pipeline is not None:
        if model is not None or version is not None:
            raise typer.BadParameter("give a model or --pipeline, not both", param_hint="MODEL")
        from shoal.cli.pipeline_cmds import eval_pipeline

        eval_pipeline(open_workspace(workspace), pipeline, data, as_json)
        return
    if model is None:
        raise typer.BadParameter("name a model, or a pipeline with --pipeline", param_hint="MODEL")
    from shoal.cascade.evaluation import cascade_report
    from shoal.coldstart import measured_llm_tier
    from shoal.data.assembled import model_drops, teacher_judged
    from shoal.defaults import describe, resolved
    from shoal.llm.answerer import LLM_FAMILY

    ws = open_workspace(workspace)
    chosen = _resolve(ws, model, version)
    report = eval_report(chosen)
    report["defaults"] = describe(ws.model(model), resolved(ws, model).kept)
    report["test_labels"] = teacher_judged(model_drops(ws, model, report["dataset_version"]))
    cascade = cascade_report(ws, model)
    if cascade is not None:
        report["cascade"] = cascade
    llm = measured_llm_tier(ws, model)
    if llm is not None:
        report["llm"] = llm
    if as_json:
        print_json(report)
        return
    if chosen.family == LLM_FAMILY:  # a cold start's LLM version: nothing measured on a test set
        console.print(f"{model} v{report['version']}: the LLM {report['params']}, answering every input (cold start)")
        if llm is not None:
            console.print(_llm_table(llm))
        return
    p = report["profile"]
    table = Table("measure", "value", title=f"{model} v{report['version']} ({report['family']})")
    metric = report["metric"]
    table.add_row(
        f"{metric} (fleet metric)", f"{report[metric]:.4f}  95% CI {report['ci'][0]:.4f}..{report['ci'][1]:.4f}"
    )
    extra = ("accuracy", "macro_f1", "macro_recall", "mcc", "ece", "mae", "rmse", "r2", "mape", "interval_coverage")
    for key in (*extra, "train_seconds"):
        if key in report and key != metric:
            table.add_row(key, f"{report[key]:.4f}")
    if report["phases"]:
        table.add_row("where the time went", _seconds(report["phases"]))
    table.add_row("latency batch 1 p50 / p95", f"{p['p50_ms_batch1']:.2f} / {p['p95_ms_batch1']:.2f} ms")
    table.add_row("latency batch 64 p50 / p95", f"{p['p50_ms_batch64']:.2f} / {p['p95_ms_batch64']:.2f} ms")
    table.add_row("throughput (batch 64)", f"{p['throughput_per_s']:,.0f} inputs/s")
    table.add_row("$ per 1M predictions", f"{p['cost_per_million']:.4f}")
    table.add_row("artifact size", f"{report['size_bytes'] / 1e6:.2f} MB")
    table.add_row("peak RSS load + predict", f"{p['peak_rss_mb']:.0f} MB" if p.get("peak_rss_mb") else "n/a")
    table.add_row("parameters", f"{p['n_parameters']:,}")
    rate = report["label_error_rate"]
    table.add_row("label-error rate (train)", "n/a" if rate is None else f"{rate:.2%}")
    table.add_row("test rows / test hash", f"{report['n_test']} / {report['test_hash'][:12]}")
    console.print(table)
    if report["test_labels"]:
        console.print(f"[yellow]{report['test_labels']}[/yellow]", highlight=False)
    if report["defaults"]:
        console.print(f"defaults: {report['defaults']}", highlight=False)
    if cascade is not None:
        console.print(_cascade_table(cascade))
    if llm is not None:
        console.print(_llm_table(llm))
    if not report["per_class"]:
        return
    classes = Table("class", "precision", "recall", "f1", "support")
    for label, row in report["per_class"].items():
        classes.add_row(
            label, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"])
        )
    console.print(classes)


def _cascade_table(cascade: dict[str, Any]) -> Table | str:
    """The cascade of the production versions: accuracy per fraction deferred, the chosen threshold, $ per 1M."""
    title = f"cascade {cascade['model']} -> {cascade['fallback']}"
    if "problem" in cascade:
        return f"{title}: {cascade['problem']}"
    table = Table(
        "deferred",
        "accuracy",
        "$ per 1M",
        title=f"{title} (v{cascade['small_version']} -> v{cascade['fallback_version']}, {cascade['n_test']} test rows)",
    )
    for point in cascade["curve"]:
        table.add_row(f"{point['deferred']:.0%}", f"{point['accuracy']:.4f}", f"{point['cost_per_million']:.4f}")
    chosen = cascade["chosen"]
    table.add_row(
        f"{chosen['deferred']:.1%} (chosen)", f"{chosen['accuracy']:.4f}", f"{chosen['cost_per_million']:.4f}"
    )
    fallback = cascade["cost_per_million"]["fallback"]
    table.add_row("fallback alone", f"{cascade['fallback_accuracy']:.4f}", f"{fallback:.4f}")
    return table


def _llm_table(llm: dict[str, Any]) -> Table:
    """The LLM tier's cost from its measured tokens and declared prices, beside the small tier's."""

    def money(value: float | None) -> str:
        return "n/a (nothing measured yet)" if value is None else f"{value:.4f}"

    table = Table("LLM tier", "value", title=f"LLM {llm['endpoint']} ({llm['model']}): {llm['role']}")
    table.add_row("declared $ per 1M tokens in / out", f"{llm['price_in']:g} / {llm['price_out']:g}")
    if llm["calls"]:
        table.add_row(
            "measured tokens per call in / out",
            f"{llm['tokens_in_per_call']:.1f} / {llm['tokens_out_per_call']:.1f} ({llm['calls']} answers)",
        )
    table.add_row("$ per 1M LLM calls", money(llm["cost_per_million"]))
    if llm["role"] == "fallback":
        table.add_row("$ per 1M predictions, small tier", money(llm["small_cost_per_million"]))
        share = llm["deferred"]
        how = "measured on the test set" if llm["deferred_measured"] else "declared max_deferral"
        table.add_row("deferred to the LLM", "n/a" if share is None else f"{share:.1%} ({how})")
    table.add_row("$ per 1M predictions, the model", money(llm["cost_per_million_predictions"]))
    return table


def versions(
    model: Annotated[str, typer.Argument(help="Model name.")],
    workspace: WorkspaceOption = ".",
    as_json: JsonOption = False,
) -> None:
    """List a model's versions."""
    from shoal.registry import PRODUCTION

    ws = open_workspace(workspace)
    production = ws.registry.alias(model, PRODUCTION)
    found = ws.registry.versions(model)
    if as_json:
        print_json([{**eval_report(v), "production": v.number == production} for v in found])
        return
    table = Table("version", "family", "metric", "dataset", "size MB", "created", "")
    for v in found:
        table.add_row(
            f"v{v.number}",
            v.family,
            f"{v.metrics.value:.4f}",
            v.dataset_version,
            f"{v.size_bytes / 1e6:.2f}",
            v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "production" if v.number == production else "",
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command("eval")(eval_)
    app.command()(versions)
