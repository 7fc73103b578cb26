"""`shoal promote`, `shoal rollback`, `shoal history`: the production alias and its decisions (a change of
production version also records the score of each pipeline with the model: `shoal history --pipeline`)."""

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
    from shoal.pipelines.history import promote_by_hand

    promote_by_hand(open_workspace(workspace), model, version, reason=reason)
    console.print(f"{model}: v{version} is now in production")


def rollback(model: Annotated[str, typer.Argument(help="Model name.")], workspace: WorkspaceOption = ".") -> None:
    """Put the previous production version back."""
    from shoal.pipelines.history import roll_back

    version = roll_back(open_workspace(workspace), model)
    console.print(f"{model}: rolled back to v{version}")


def history(
    model: Annotated[str | None, typer.Argument(help="Model name (not with --pipeline).")] = None,
    limit: Annotated[int, typer.Option(help="How many of the latest events.")] = 50,
    pipeline: Annotated[
        str | None,
        typer.Option(
            "--pipeline",
            help="The pipeline's end-to-end score after each production change of one of its models, beside the "
            "model's own gain.",
        ),
    ] = None,
    workspace: WorkspaceOption = ".",
    as_json: JsonOption = False,
) -> None:
    """Every event of a model: drops, trainings, promotions, rejections with reasons, rollbacks, failures. With
    --pipeline, whether each component's change improved the pipeline end to end."""
    if pipeline is not None:
        if model is not None:
            raise typer.BadParameter("give a model or --pipeline, not both", param_hint="MODEL")
        from shoal.cli.pipeline_cmds import pipeline_history

        pipeline_history(open_workspace(workspace), pipeline, limit, as_json)
        return
    if model is None:
        raise typer.BadParameter("name a model, or a pipeline with --pipeline", param_hint="MODEL")
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
