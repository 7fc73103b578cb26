"""`shoal label` (and its older name `shoal distill`): a teacher labels unlabeled texts into a training drop;
`shoal synth`: an LLM writes new examples per label, validated before they are stored."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shoal.cli.common import WorkspaceOption, console, counted, open_workspace


def label(
    model: Annotated[str, typer.Argument(help="Model whose training data grows.")],
    teacher: Annotated[
        str,
        typer.Option(
            "--teacher",
            help="llm (the fleet file's one LLM endpoint), llm:NAME, a version of the model (3 or v3) or a family "
            "fitted on its data.",
        ),
    ],
    unlabeled: Annotated[
        Path,
        typer.Option("--unlabeled", help="CSV, TSV, JSONL or Parquet file of texts.", exists=True, dir_okay=False),
    ],
    text_column: Annotated[str, typer.Option(help="Column of the unlabeled file holding the texts.")] = "text",
    min_confidence: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Leave out texts the teacher is less sure about (not an LLM).")
    ] = 0.0,
    workspace: WorkspaceOption = ".",
) -> None:
    """Label unlabeled texts with a teacher and store them as a training drop with their provenance; then run
    `shoal train`."""
    from shoal.train.teach import label as label_drop

    with counted("labelling") as update:
        result = label_drop(
            open_workspace(workspace),
            model,
            teacher,
            unlabeled,
            text_column=text_column,
            min_confidence=min_confidence,
            progress=update,
        )
    console.print(
        f"teacher {result.teacher}: {result.read} texts read, {result.known} already in the data, "
        f"{result.repeated} repeated, {result.unsure} below --min-confidence",
        highlight=False,
    )
    if result.outcomes:
        asked = ", ".join(f"{n} {outcome}" for outcome, n in sorted(result.outcomes.items()))
        console.print(f"LLM answers: {asked}; ${result.dollars:.4f} spent", highlight=False)
        if result.outcomes["invalid"]:
            console.print(f"{result.outcomes['invalid']} answers outside the label set were left out", highlight=False)
        if result.outcomes["capped"]:
            console.print(
                f"the endpoint's daily spend cap is reached: {result.outcomes['capped']} texts were not labelled; "
                "run the command again tomorrow (labelled texts come from the cache)",
                highlight=False,
            )
    if result.problem:
        console.print(f"[yellow]the endpoint failed on some texts:[/yellow] {result.problem}", highlight=False)
    if result.ingest is None:
        console.print("nothing to store")
        return
    drop = result.ingest.drop
    state = "stored" if result.ingest.created else "already stored"
    console.print(
        f"{state}: drop {drop.hash[:12]} of {model}: {drop.n_train} teacher-labelled training rows", highlight=False
    )
    if result.judged_by_teacher:
        console.print(
            f"{model} has no human-labelled test rows: {drop.n_test} of these rows are its test set, so its quality "
            "is measured against the teacher until you ingest human-labelled test data (--split test)",
            highlight=False,
        )
    console.print(f"next: shoal train {model}")


def synth(
    model: Annotated[str, typer.Argument(help="Model whose training data grows.")],
    per_label: Annotated[int, typer.Option("--per-label", min=1, help="New texts to ask for per label.")],
    generator: Annotated[
        str, typer.Option("--generator", help="The LLM endpoint that writes: llm (the only one) or llm:NAME.")
    ] = "llm",
    teacher: Annotated[
        str | None,
        typer.Option(help="Who re-labels each text (llm, llm:NAME, a version or a family); default: the generator."),
    ] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Real texts of the label shown with each request.")] = 5,
    batch: Annotated[int, typer.Option(min=1, max=50, help="Texts asked for per request.")] = 10,
    near: Annotated[
        float, typer.Option(min=0.5, max=1.0, help="Cosine (character n-grams) from which a text is a near-duplicate.")
    ] = 0.9,
    workspace: WorkspaceOption = ".",
) -> None:
    """Ask an LLM for new training texts per label, seeded with real ones; keep those that pass the checks
    (duplicates, near-duplicates, the teacher's label, length, language) as a training drop; then run `shoal
    train`."""
    from shoal.train.synth import REASONS
    from shoal.train.synth import synth as synth_drop

    with counted("generating") as update:
        result = synth_drop(
            open_workspace(workspace),
            model,
            per_label=per_label,
            generator=generator,
            teacher=teacher,
            seeds=seeds,
            batch=batch,
            near=near,
            progress=lambda what, done, total: update(done, total, what),
        )
    requests = ", ".join(f"{n} {outcome}" for outcome, n in sorted(result.outcomes.items()))
    console.print(
        f"generator {result.generator}: {result.asked} texts asked for, {result.generated} written "
        f"(requests: {requests}); teacher {result.teacher}; ${result.dollars:.4f} spent",
        highlight=False,
    )
    if result.unseeded:
        console.print(f"labels without training texts to seed them: {', '.join(result.unseeded)}", highlight=False)
    if result.problem:
        console.print(f"[yellow]the endpoint failed on some requests:[/yellow] {result.problem}", highlight=False)
    share = f" ({result.kept / result.generated:.0%})" if result.generated else ""
    console.print(f"kept {result.kept} of {result.generated}{share}", highlight=False)
    for reason in REASONS:
        if result.dropped[reason]:
            console.print(f"  dropped {result.dropped[reason]}: {reason}", highlight=False)
    if result.ingest is None:
        console.print("nothing to store")
        return
    drop = result.ingest.drop
    state = "stored" if result.ingest.created else "already stored"
    console.print(f"{state}: drop {drop.hash[:12]} of {model}: {drop.n_train} generated training rows", highlight=False)
    console.print(f"next: shoal train {model}")


def register(app: typer.Typer) -> None:
    app.command()(label)
    app.command("distill", help="The older name of `shoal label`.", hidden=True)(label)
    app.command()(synth)
