"""`shoal eval --pipeline NAME` (a pipeline judged end to end) and `shoal history --pipeline NAME` (its score after
each production change of one of its models): `shoal eval` and `shoal history` hand over to this module."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from shoal.cli.common import console, errors, print_json

if TYPE_CHECKING:
    from shoal.workspace import Workspace


def _accuracy(part: dict) -> str:  # type: ignore[type-arg]
    if part["accuracy"] is None:
        return "n/a"
    return f"{part['accuracy']:.4f}  95% CI {part['ci'][0]:.4f}..{part['ci'][1]:.4f}"


def eval_pipeline(ws: Workspace, name: str, data: Path | None, as_json: bool) -> None:
    from shoal.pipelines.evaluate import evaluate_pipeline

    report = evaluate_pipeline(ws, name, data)
    if as_json:
        print_json(report)
        return
    versions = ", ".join(f"{model} v{number}" for model, number in report["versions"].items())
    table = Table("measure", "judged", "accuracy", "skipped", title=f"pipeline {name} ({versions})")
    end = report["end_to_end"]
    table.add_row("end to end", str(end["n"]), _accuracy(end), "")
    for step, part in report["steps"].items():
        table.add_row(f"step {step}", str(part["n"]), _accuracy(part), str(part["skipped"]))
    console.print(table)
    stops = ", ".join(f"{count} at {step}" for step, count in report["stopped"].items()) or "none"
    test = report["test_set"]
    rows = "" if test["hash"][:12] in test["source"] else f" (rows {test['hash'][:12]})"
    console.print(f"{report['n']} inputs of {test['source']}{rows}; stopped: {stops}")


def _gain(gain: dict | None) -> str:  # type: ignore[type-arg]
    if gain is None:
        return "not gated"
    ci = gain["ci"]
    return f"{gain['metric']} Δ {gain['delta']:+.4f} ({ci[0]:+.4f}..{ci[1]:+.4f}), p={gain['p_value']:.3g}"


def pipeline_history(ws: Workspace, name: str, limit: int, as_json: bool) -> None:
    """The pipeline's end-to-end score after each production change of one of its models, newest last."""
    from shoal.pipelines.testset import no_test_set

    pipeline = ws.fleet.pipeline(name)
    rows = ws.registry.pipeline_scores(name)[-limit:]
    untested = ws.registry.pipeline_drop(name) is None and pipeline.test is None
    if as_json:
        print_json([{**row.__dict__, "at": row.at.isoformat()} for row in rows])
        if untested:
            errors.print(no_test_set(name), highlight=False)
        return
    if not rows:
        waiting = (
            f"no production change of {', '.join(pipeline.models)} since the pipeline had a test set: the next one "
            "records its end-to-end score here"
        )
        console.print(no_test_set(name) if untested else waiting, highlight=False)
        return
    columns = ("time", "change (versions after it)", "component gain", "end to end", "steps")
    table = Table(*columns, title=f"pipeline {name}")
    for column in table.columns:
        column.overflow = "fold"  # a narrow terminal wraps a figure, never cuts it
    for row in rows:
        record = row.record
        change = f"{row.model} v{row.from_version or '-'} → v{row.to_version} ({row.actor})"
        at = row.at.strftime("%Y-%m-%d %H:%M:%S")
        if "error" in record:
            table.add_row(at, change, _gain(record["gain"]), "not judged: " + record["error"], "")
            continue
        versions = ", ".join(f"{model} v{number}" for model, number in record["versions"].items())
        steps = "\n".join(f"{step} {_accuracy(part)}" for step, part in record["steps"].items())
        table.add_row(at, f"{change}\n{versions}", _gain(record["gain"]), _accuracy(record["end_to_end"]), steps)
    console.print(table)
    if untested:
        console.print(no_test_set(name), highlight=False)
