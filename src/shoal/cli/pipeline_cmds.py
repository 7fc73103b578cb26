"""`shoal eval --pipeline NAME`: a pipeline judged end to end (its own module; `shoal eval` hands over to it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from shoal.cli.common import console, print_json

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
    console.print(f"{report['n']} inputs; stopped: {stops}")
