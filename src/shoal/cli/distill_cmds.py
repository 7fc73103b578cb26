"""`shoal distill`: a teacher labels unlabeled texts into a training drop for the model's (smaller) families."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shoal.cli.common import WorkspaceOption, console, open_workspace


def distill(
    model: Annotated[str, typer.Argument(help="Model whose training data grows.")],
    teacher: Annotated[
        str, typer.Option("--teacher", help="A version of the model (3 or v3) or a family fitted on its data.")
    ],
    unlabeled: Annotated[
        Path,
        typer.Option("--unlabeled", help="CSV, TSV, JSONL or Parquet file of texts.", exists=True, dir_okay=False),
    ],
    text_column: Annotated[str, typer.Option(help="Column of the unlabeled file holding the texts.")] = "text",
    min_confidence: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Leave out texts the teacher is less sure about.")
    ] = 0.0,
    workspace: WorkspaceOption = ".",
) -> None:
    """Label unlabeled texts with a teacher and store them as a training drop; then run `shoal train`."""
    from shoal.train.distill import distill as distill_drop

    result = distill_drop(
        open_workspace(workspace), model, teacher, unlabeled, text_column=text_column, min_confidence=min_confidence
    )
    console.print(
        f"teacher {result.teacher}: {result.read} texts read, {result.known} already in the data, "
        f"{result.repeated} repeated, "
        f"{result.unsure} below --min-confidence"
    )
    if result.ingest is None:
        console.print("nothing to store")
        return
    drop = result.ingest.drop
    state = "stored" if result.ingest.created else "already stored"
    console.print(f"{state}: drop {drop.hash[:12]} of {model}: {drop.n_train} teacher-labelled training rows")
    console.print(f"next: shoal train {model}")


def register(app: typer.Typer) -> None:
    app.command()(distill)
