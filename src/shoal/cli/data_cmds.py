"""`shoal ingest` and `shoal data ...`: versioned, validated data drops and the label audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from shoal.cli.common import JsonOption, WorkspaceOption, console, open_workspace, print_json
from shoal.data.split_mode import SplitMode

data_app = typer.Typer(help="Inspect a model's data drops and label issues.", no_args_is_help=True)


def ingest(
    model: Annotated[str, typer.Argument(help="Model the data belongs to.")],
    file: Annotated[Path, typer.Argument(help="CSV, TSV, JSONL or Parquet file.", exists=True, dir_okay=False)],
    split: Annotated[
        SplitMode, typer.Option(help="train, test (an official test split, kept as is) or auto (by hash of the text).")
    ] = "auto",
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="Leave out invalid rows (listed) instead of rejecting the whole drop."),
    ] = False,
    workspace: WorkspaceOption = ".",
) -> None:
    """Validate a file and record it as an immutable, content-addressed data drop."""
    from shoal.data.errors import DropRejected
    from shoal.data.ingest import ingest_file

    try:
        result = ingest_file(open_workspace(workspace), model, file, split=split, skip_invalid=skip_invalid)
    except DropRejected as error:
        error.next_step = "Fix the file and ingest it again" + (
            "." if skip_invalid else " (or pass --skip-invalid to leave out the bad rows)."
        )
        raise
    drop = result.drop
    state = "stored" if result.created else "already stored"
    console.print(
        f"{state}: drop {drop.hash[:12]} of {model}: {drop.n_rows} rows ({drop.n_train} train, {drop.n_test} test)"
    )
    for line in result.skipped[:20]:
        console.print(f"[yellow]skipped[/yellow] {file.name}: {line}", highlight=False)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


@data_app.command("list")
def list_drops(
    model: Annotated[str, typer.Argument(help="Model name.")],
    workspace: WorkspaceOption = ".",
    as_json: JsonOption = False,
) -> None:
    """List a model's data drops and its dataset version."""
    ws = open_workspace(workspace)
    drops = ws.registry.drops(model)
    if as_json:
        print_json({"dataset_version": ws.registry.dataset_version(model, drops), "drops": [d.__dict__ for d in drops]})
        return
    table = Table("drop", "source", "split", "rows", "train", "test", "created")
    for d in drops:
        table.add_row(
            d.hash[:12],
            d.source,
            d.split,
            str(d.n_rows),
            str(d.n_train),
            str(d.n_test),
            d.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)
    console.print(f"dataset version {ws.registry.dataset_version(model, drops)}")


@data_app.command("issues")
def issues(
    model: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int | None, typer.Option(help="Version (default: production, else the latest).")] = None,
    limit: Annotated[int, typer.Option(help="How many to show.")] = 20,
    workspace: WorkspaceOption = ".",
    as_json: JsonOption = False,
) -> None:
    """Likely mislabelled training examples (confident learning on out-of-fold predictions)."""
    from shoal.data.audit import LABEL_ISSUES_FILE
    from shoal.registry import PRODUCTION, RegistryError

    ws = open_workspace(workspace)
    registry = ws.registry
    if version is None:
        version = registry.alias(model, PRODUCTION)
    if version is None:
        versions = registry.versions(model)
        if not versions:
            raise RegistryError(f"model {model!r} has no trained version yet; run 'shoal train {model}'")
        version = versions[-1].number
    record = registry.version(model, version)
    folder = registry.artifacts.open(record.artifact_uri, record.checksum)
    if not (folder / LABEL_ISSUES_FILE).exists():
        raise RegistryError(f"{model} v{version} has no label audit (only text-classification models have one)")
    found = json.loads((folder / LABEL_ISSUES_FILE).read_text(encoding="utf-8"))
    if as_json:
        print_json({"version": version, "label_error_rate": record.label_error_rate, "issues": found[:limit]})
        return
    table = Table(
        "row",
        "text",
        "given",
        "suggested",
        "p(given)",
        title=(f"{model} v{version}: estimated label-error rate {record.label_error_rate or 0:.1%}"),
    )
    for issue in found[:limit]:
        table.add_row(
            str(issue["row"]),
            issue["text"][:80],
            issue["given"],
            issue["suggested"],
            f"{issue['given_probability']:.2f}",
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(ingest)
    app.add_typer(data_app, name="data")
