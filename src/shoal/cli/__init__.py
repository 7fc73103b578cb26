"""The `shoal` command line: thin commands over the library; no logic of its own."""

from __future__ import annotations

import sys

import typer

from shoal import __version__
from shoal.cli import (
    data_cmds,
    demo_cmds,
    doctor_cmds,
    fleet_cmds,
    monitor_cmds,
    registry_cmds,
    report_cmds,
    serve_cmds,
    teach_cmds,
    train_cmds,
    worker_cmds,
)
from shoal.cli.common import error_line, errors

app = typer.Typer(
    name="shoal",
    help="Run a fleet of small, task-specific models: versioned data, training, evaluation, gated "
    "promotion, serving and continuous retraining.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (
    fleet_cmds,
    data_cmds,
    train_cmds,
    teach_cmds,
    registry_cmds,
    report_cmds,
    demo_cmds,
    serve_cmds,
    worker_cmds,
    doctor_cmds,
    monitor_cmds,
):
    module.register(app)


def _version(value: bool) -> None:
    if value:
        print(f"shoal {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """shoal: many small models in production, trained and promoted with no human step."""


def known_errors() -> tuple[type[Exception], ...]:
    """The errors printed as one line instead of a traceback; imported only once a command has failed."""
    from shoal.data.errors import DropRejected
    from shoal.fleet import FleetError
    from shoal.registry import ArtifactError, RegistryError
    from shoal.train.errors import TrainError

    return (FleetError, DropRejected, RegistryError, ArtifactError, TrainError)


def main() -> None:
    """Every command module imports only typer and rich at the top, and what a command needs inside the command,
    so `shoal --help` and the commands that do not train never load the training stack."""
    try:
        app()
    except Exception as error:
        line = error_line(error, known_errors())
        if line is None:
            raise
        errors.print(f"[red]error:[/red] {line}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(1)
