"""`shoal report`: the selection report per model and for the fleet (HTML, or JSON with --json)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shoal.cli.common import JsonOption, WorkspaceOption, console, open_workspace, print_json


def report(
    models: Annotated[list[str] | None, typer.Argument(help="Models to report on (default: every model).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for the HTML pages.", file_okay=False)] = Path("shoal-report"),
    workspace: WorkspaceOption = ".",
    as_json: JsonOption = False,
) -> None:
    """Every candidate on quality vs latency and vs size (Pareto front marked), the full metrics table with CIs,
    the chosen version and why, and the label-issue list."""
    from shoal.report import model_report, write_reports

    ws = open_workspace(workspace)
    names = models or list(ws.fleet.models)
    for name in names:
        ws.model(name)
    if as_json:
        print_json([model_report(ws, name) for name in names])
        return
    pages = write_reports(ws, names, out)
    console.print(f"wrote {len(pages)} page(s); open {pages[0]}")


def register(app: typer.Typer) -> None:
    app.command()(report)
