"""`shoal ingest` and `shoal data ...`: versioned, validated data drops and the label audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from shoal.cli.common import JsonOption, WorkspaceOption, console, open_workspace, print_json
from shoal.data.split_mode import SplitMode

if TYPE_CHECKING:
    from shoal.workspace import Workspace

data_app = typer.Typer(help="Inspect a model's data drops and label issues.", no_args_is_help=True)


def ingest(
    model: Annotated[str | None, typer.Argument(help="Model the data belongs to (not with --pipeline).")] = None,
    file: Annotated[
        Path | None, typer.Argument(help="CSV, TSV, JSONL or Parquet file.", exists=True, dir_okay=False)
    ] = None,
    split: Annotated[
        SplitMode, typer.Option(help="train, test (an official test split, kept as is) or auto (by hash of the text).")
    ] = "auto",
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="Leave out invalid rows (listed) instead of rejecting the whole drop."),
    ] = False,
    pipeline: Annotated[
        str | None,
        typer.Option(
            "--pipeline",
            help="Register FILE as this pipeline's labelled test set (a text column, one label column per judged "
            "step): 'shoal ingest --pipeline NAME FILE'. It judges the pipeline; no model trains on it.",
        ),
    ] = None,
    workspace: WorkspaceOption = ".",
) -> None:
    """Validate a file and record it as an immutable, content-addressed data drop (of a model, or with --pipeline
    the test set of a pipeline)."""
    from shoal.data.errors import DropRejected
    from shoal.data.ingest import ingest_file

    if pipeline is not None:
        _ingest_pipeline_test(workspace, pipeline, model, file, split, skip_invalid)
        return
    if model is None or file is None:
        raise typer.BadParameter("give a MODEL and a FILE (or --pipeline NAME FILE)", param_hint="MODEL FILE")
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


def _ingest_pipeline_test(
    workspace: Path, pipeline: str, first: str | None, second: Path | None, split: SplitMode, skip_invalid: bool
) -> None:
    """`shoal ingest --pipeline NAME FILE`: the one argument is the file (a test set is kept whole, as it is)."""
    from shoal.pipelines.testset import ingest_pipeline_test

    if first is None or second is not None:
        raise typer.BadParameter("give one FILE with --pipeline (no model name)", param_hint="FILE")
    if split != "auto" or skip_invalid:
        raise typer.BadParameter("a pipeline test set is kept whole: no --split or --skip-invalid", param_hint="FILE")
    file = Path(first)
    if not file.is_file():
        raise typer.BadParameter(f"file {file} does not exist", param_hint="FILE")
    drop, created = ingest_pipeline_test(open_workspace(workspace), pipeline, file)
    state = "stored" if created else "already the newest"
    console.print(
        f"{state}: test drop {drop.hash[:12]} of pipeline {pipeline}: {drop.n_rows} rows; "
        f"'shoal eval --pipeline {pipeline}' judges the pipeline on it"
    )


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
    """Likely mislabelled training examples (confident learning on out-of-fold predictions), and the stored texts
    a later drop relabelled (the latest label is the one used)."""
    from shoal.data.relabels import relabels

    ws = open_workspace(workspace)
    relabelled = relabels(ws.registry, model)
    audit = _label_audit(ws, model, version, required=not relabelled)
    if as_json:
        print_json(
            {
                "version": audit and audit["version"],
                "label_error_rate": audit and audit["label_error_rate"],
                "issues": audit["issues"][:limit] if audit else [],
                "relabelled": [
                    {"text": r.text, "label": r.label, "history": [list(step) for step in r.history]}
                    for r in relabelled[:limit]
                ],
            }
        )
        return
    if audit is not None:
        table = Table(
            "row",
            "text",
            "given",
            "suggested",
            "p(given)",
            title=f"{model} v{audit['version']}: estimated label-error rate {audit['label_error_rate'] or 0:.1%}",
        )
        for issue in audit["issues"][:limit]:
            table.add_row(
                str(issue["row"]),
                issue["text"][:80],
                issue["given"],
                issue["suggested"],
                f"{issue['given_probability']:.2f}",
            )
        console.print(table)
    if relabelled:
        table = Table(
            "text", "labels, oldest first (drop)", "used", title=f"{model}: {len(relabelled)} relabelled text(s)"
        )
        for r in relabelled[:limit]:
            table.add_row(r.text[:80], " → ".join(f"{label} ({drop[:12]})" for label, drop in r.history), r.label)
        console.print(table)


def _label_audit(ws: Workspace, model: str, version: int | None, *, required: bool) -> dict[str, Any] | None:
    """{version, label_error_rate, issues} of `version` (default: production, else the latest); None when there is
    none and it is not `required` (otherwise a RegistryError says why)."""
    from shoal.data.audit import LABEL_ISSUES_FILE
    from shoal.registry import PRODUCTION, RegistryError

    registry = ws.registry
    if version is None and model in registry.model_names():
        version = registry.alias(model, PRODUCTION)
        versions = registry.versions(model)
        if version is None and versions:
            version = versions[-1].number
    if version is None:
        if not required:
            return None
        raise RegistryError(f"model {model!r} has no trained version yet; run 'shoal train {model}'")
    record = registry.version(model, version)
    folder = registry.artifacts.open(record.artifact_uri, record.checksum)
    if not (folder / LABEL_ISSUES_FILE).exists():
        if not required:
            return None
        raise RegistryError(f"{model} v{version} has no label audit (only text-classification models have one)")
    found = json.loads((folder / LABEL_ISSUES_FILE).read_text(encoding="utf-8"))
    return {"version": version, "label_error_rate": record.label_error_rate, "issues": found}


def register(app: typer.Typer) -> None:
    app.command()(ingest)
    app.add_typer(data_app, name="data")
