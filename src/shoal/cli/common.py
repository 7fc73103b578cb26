"""What every command shares: the workspace option, the console, and turning known errors into messages."""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

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
ExecutorOption = Annotated[
    str,
    typer.Option(
        "--executor",
        help="Where each (model, family) fit runs: local (this machine's training pool) or ray (a Ray cluster, "
        "one task per fit; pip install 'shoal\\[ray]'). The gate and the registry writes stay in this process.",
    ),
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address", help="The Ray cluster's head, HOST:PORT (default: RAY_ADDRESS, else this node's cluster)."
    ),
]


@contextmanager
def counted(description: str) -> Iterator[Callable[..., None]]:
    """A transient progress bar of items done of a total; yields `update(done, total, what=None)` (`what`: a new
    description)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task(description, total=None)

        def update(done: int, total: int | None, what: str | None = None) -> None:
            progress.update(bar, completed=done, total=total, **({"description": what} if what else {}))

        yield update


def open_workspace(path: Path) -> Workspace:
    from shoal.workspace import Workspace  # the registry stack (SQLAlchemy, pandas) only for commands that use it

    return Workspace(path)


def print_json(data: Any, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(json.dumps(data, indent=2, default=str) + "\n")


def error_line(error: Exception, known: tuple[type[Exception], ...]) -> str | None:
    """The one line printed for a failed command instead of a traceback, or None for an unexpected error.

    Known errors say what to do themselves; a full disk met anywhere outside the store (which raises its own
    `StoreFull`) names the file and the way out."""
    if isinstance(error, known):
        return str(error)
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {error.filename}" if error.filename else ""
        return f"no space left on the disk{where}; free space on it and run the command again"
    return None
