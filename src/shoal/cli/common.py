"""What every command shares: the workspace option, the console, and turning known errors into messages."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from shoal.workspace import Workspace

console = Console(soft_wrap=True)  # long lines (curl commands, reasons) stay whole for copy-paste
errors = Console(stderr=True)

WorkspaceOption = Annotated[
    Path,
    typer.Option(
        "--workspace", "-w", envvar="SHOAL_WORKSPACE", help="Workspace folder (holds shoal.yaml).", file_okay=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def open_workspace(path: Path) -> Workspace:
    from shoal.workspace import Workspace  # the registry stack (SQLAlchemy, pandas) only for commands that use it

    return Workspace(path)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
