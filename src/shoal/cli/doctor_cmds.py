"""`shoal doctor`: check a workspace's store and repair what is safe to repair."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from shoal.cli.common import JsonOption, WorkspaceOption, console, open_workspace, print_json

GRACE_HELP = (
    "Seconds a file no row refers to is left alone: a younger one may belong to a process still writing its row. "
    "Default: 10 minutes; 0 when no shoal process writes to the store."
)


def doctor(
    workspace: WorkspaceOption = ".",
    repair: Annotated[bool, typer.Option("--repair", help="Fix what is safe to fix, then report.")] = False,
    grace: Annotated[float | None, typer.Option(min=0, help=GRACE_HELP)] = None,
    as_json: JsonOption = False,
) -> None:
    """Check every version artifact, drop file, alias, staging folder and job; exit 1 when a problem remains."""
    from shoal.doctor import examine

    ws = open_workspace(workspace)
    diagnosis = examine(ws, repair=repair) if grace is None else examine(ws, repair=repair, grace_seconds=grace)
    if as_json:
        print_json(diagnosis.as_dict())
    else:
        table = Table("check", "status", "what was found / what to do")
        for check in diagnosis.checks:
            status = "[red]problem[/red]" if not check.ok else "[yellow]repaired[/yellow]" if check.repaired else "ok"
            lines = [escape(line) for line in (*check.repaired, *check.problems, *check.notes)]
            if not check.ok:
                lines.append(f"[bold]to do:[/bold] {escape(check.advice)}")
            table.add_row(check.name, status, "\n".join(lines))
        console.print(table, highlight=False)
        console.print("healthy" if diagnosis.healthy else "[red]problems remain[/red]")
    raise typer.Exit(0 if diagnosis.healthy else 1)


def register(app: typer.Typer) -> None:
    app.command()(doctor)
