"""`shoal promote`, `shoal rollback`, `shoal history`: the production alias and its decisions."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from shoal.cli.common import JsonOption, WorkspaceOption, console, open_workspace, print_json


def promote(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(help="Version to put in production.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the history).")] = "manual promotion",
    workspace: WorkspaceOption = ".",
) -> None:
    """Put a version in production by hand (recorded as manual)."""
    ws = open_workspace(workspace)
    ws.registry.set_alias(model, version, actor="manual", reason=reason)
    console.print(f"{model}: v{version} is now in production")


def rollback(model: Annotated[str, typer.Argument(help="Model name.")], workspace: WorkspaceOption = ".") -> None:
    """Put the previous production version back."""
    version = open_workspace(workspace).registry.rollback(model)
    console.print(f"{model}: rolled back to v{version}")


def history(
    model: Annotated[str, typer.Argument(help="Model name.")],
    limit: Annotated[int, typer.Option(help="How many of the latest events.")] = 50,
    workspace: WorkspaceOption = ".",
    as_json: JsonOption = False,
) -> None:
    """Every event of a model: drops, trainings, promotions, rejections with reasons, rollbacks, failures."""
    found = open_workspace(workspace).registry.events(model)[-limit:]
    if as_json:
        print_json([{k: v for k, v in e.__dict__.items() if k != "payload" or "traceback" not in v} for e in found])
        return
    table = Table("time", "event", "version", "what")
    for e in found:
        table.add_row(
            e.at.strftime("%Y-%m-%d %H:%M:%S") if e.at else "", e.kind, f"v{e.version}" if e.version else "", e.message
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(promote)
    app.command()(rollback)
    app.command()(history)
