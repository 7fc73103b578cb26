"""`shoal drift`: has the traffic a production version serves moved away from the data it was trained on?"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from shoal.cli.common import JsonOption, WorkspaceOption, console, open_workspace, print_json


def drift(
    model: Annotated[str, typer.Argument(help="Model whose production version to check.")],
    workspace: WorkspaceOption = ".",
    window: Annotated[
        int, typer.Option(min=1, max=5000, help="How many of the newest logged predictions to check.")
    ] = 500,
    min_samples: Annotated[int, typer.Option(min=1, help="No verdict on a window with fewer inputs.")] = 200,
    window_hours: Annotated[
        float | None, typer.Option(min=0.001, help="Only predictions logged in the last this many hours.")
    ] = None,
    budget: Annotated[float, typer.Option(min=0.0001, help="Alert budget: false alarms per week you accept.")] = 1.0,
    checks_per_week: Annotated[
        float, typer.Option(min=0.0001, help="How often this check runs (168: hourly), for the budget.")
    ] = 168.0,
    accuracy_margin: Annotated[
        float,
        typer.Option(
            min=0,
            max=1,
            help="A classifier alerts when its estimated or live accuracy is below its test accuracy less this.",
        ),
    ] = 0.05,
    as_json: JsonOption = False,
) -> None:
    """Compare the newest logged predictions of MODEL's production version with its training inputs and its answers
    on the test set (MMD, KS and chi-squared tests), and for a classifier its estimated accuracy (from calibrated
    confidence) and its accuracy on feedback labels with its test accuracy; all corrected together. For a forecaster:
    the errors of the forecasts production served against the values realised since (its bias and size) with its
    errors on its backtest; --window and --min-samples count realised points. Exit 1 on an alert."""
    from shoal.monitor.drift import level_for_budget
    from shoal.monitor.watch import latest_window

    ws = open_workspace(workspace)
    level = level_for_budget(budget, checks_per_week)
    watched = latest_window(
        ws,
        model,
        window=window,
        min_samples=min_samples,
        level=level,
        accuracy_margin=accuracy_margin,
        window_hours=window_hours,
    )
    verdict = watched.verdict
    if as_json:
        print_json(
            {
                "model": model,
                "version": watched.version,
                "n": verdict.n,
                "unit": verdict.unit,
                "source": watched.source,
                "level": level,
                "drifted": verdict.drifted,
                "pending": verdict.pending,
                "tests": [vars(finding) for finding in verdict.findings],
            }
        )
    else:
        table = Table("test", "statistic", "p-value", "alert")
        for finding in verdict.findings:
            alert = "[red]drift[/red]" if finding.fired else "-"
            table.add_row(escape(finding.test), f"{finding.statistic:.4g}", f"{finding.p_value:.3g}", alert)
        newest = "newest predictions" if watched.source is None else f"{verdict.unit}: {watched.source}"
        console.print(escape(f"{model} v{watched.version}: {verdict.n} {newest}, level {level:.4g} per check"))
        if verdict.findings:
            console.print(table)
        console.print(escape(verdict.summary()))
    raise typer.Exit(1 if verdict.drifted else 0)


def register(app: typer.Typer) -> None:
    app.command()(drift)
