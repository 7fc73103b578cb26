"""`shoal init`, `shoal add`, `shoal check`: write and validate the fleet file."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from shoal.cli.common import WorkspaceOption, console, open_workspace
from shoal.tasks import task_names

#: the task kinds `--task` takes
TaskName = Enum("TaskName", [(name, name) for name in task_names()], type=str)  # type: ignore[misc]
DEFAULT_METRIC = "Default: the task's; text classification chooses it from the data at the first training."
METRIC_HELP = f"The metric the gate judges on. {DEFAULT_METRIC}"


class AddCommand(TyperCommand):
    """`shoal add`, whose --metric help lists each task's metrics, read from the task specs (pydantic models) only
    when that help is shown: `shoal --help` and every other command stay free of them."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        from shoal.tasks import model_specs

        metrics = "; ".join(f"{task}: {spec.metric_choices()}" for task, spec in model_specs().items())
        for param in self.params:
            if param.name == "metric":
                param.help = f"{metrics}. {DEFAULT_METRIC}"  # type: ignore[attr-defined]
        super().format_help(ctx, formatter)


def init(
    workspace: WorkspaceOption = ".",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing shoal.yaml.")] = False,
) -> None:
    """Write a commented example shoal.yaml into the workspace."""
    from shoal.fleet_edit import write_example

    ws = open_workspace(workspace)
    ws.root.mkdir(parents=True, exist_ok=True)
    write_example(ws.fleet_path, force=force)
    console.print(f"wrote {ws.fleet_path}; next: 'shoal ingest MODEL FILE'")


def add(
    model: Annotated[str, typer.Argument(help="Name of the new model (lowercase, digits, '-', '_').")],
    task: Annotated[TaskName, typer.Option(help="The model's task.")] = TaskName("text-classification"),
    text_column: Annotated[str | None, typer.Option(help="Column holding the input text.")] = None,
    label_column: Annotated[str | None, typer.Option(help="Column holding the label.")] = None,
    target: Annotated[str | None, typer.Option("--target", help="regression: the numeric column to predict.")] = None,
    id_column: Annotated[str | None, typer.Option(help="forecasting: the series id column (none: one series).")] = None,
    time_column: Annotated[str | None, typer.Option(help="forecasting: the timestamp column (ISO 8601).")] = None,
    value_column: Annotated[str | None, typer.Option(help="forecasting: the observed value column.")] = None,
    freq: Annotated[str | None, typer.Option(help="forecasting: pandas frequency, e.g. D, W, MS, h.")] = None,
    horizon: Annotated[int | None, typer.Option(help="forecasting: points to forecast ahead.")] = None,
    metric: Annotated[str | None, typer.Option(help=METRIC_HELP)] = None,
    families: Annotated[str | None, typer.Option(help="Comma-separated candidate families.")] = None,
    labels: Annotated[str | None, typer.Option(help="Comma-separated declared label set.")] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="KEY=VALUE: any other key of the task's model entry (repeatable; the value is YAML; a dotted key "
            "sets a section's key), e.g. --set season_length=7 --set gate.alpha=0.1.",
        ),
    ] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite a model of that name.")] = False,
    workspace: WorkspaceOption = ".",
) -> None:
    """Add a model to shoal.yaml, keeping the file's comments."""
    from shoal.fleet_edit import add_model, with_settings

    ws = open_workspace(workspace)
    fields = {
        "task": task.value,
        "text_column": text_column,
        "label_column": label_column,
        "target_column": target,
        "id_column": id_column,
        "time_column": time_column,
        "value_column": value_column,
        "freq": freq,
        "horizon": horizon,
        "metric": metric,
        "families": split(families),
        "labels": split(labels),
    }
    add_model(ws.fleet_path, model, with_settings(fields, settings or []), replace=replace)
    console.print(f"added model {model!r} to {ws.fleet_path}")


def check(workspace: WorkspaceOption = ".") -> None:
    """Validate shoal.yaml and list its models, with the defaults chosen from each model's data and why."""
    from shoal.defaults import describe, resolved

    ws = open_workspace(workspace)
    fleet = ws.fleet
    for name, given in fleet.models.items():
        try:
            found = resolved(ws, name)
        except Exception as error:  # the file is valid; only the registry's record of chosen defaults is unknown
            console.print(f"{name}: {given.task}, families {', '.join(given.families)}")
            console.print(f"  defaults: not read, the registry cannot be opened ({type(error).__name__})")
            continue
        spec, line = found.spec, describe(given, found.kept)
        pending = found.kept is None and "metric" in given.data_chosen and not given.given("metric")
        metric = "chosen from the data" if pending else spec.metric
        console.print(f"{name}: {spec.task}, metric {metric}, families {', '.join(spec.families)}")
        if line:
            console.print(f"  defaults: {line}", highlight=False)
    console.print(f"[green]ok[/green]: {len(fleet.models)} model(s)")


def split(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command(cls=AddCommand)(add)
    app.command()(check)
