"""A pipeline judged end to end on its own labelled test file, with the runner the server uses.

The file (CSV, TSV, JSONL or Parquet; the pipeline's `test:` or one given) has a `text` column with the pipeline's
input and one column per judged step, named after the step, holding the label that step should answer; an empty
cell is not judged (e.g. no intent for a spam text). An input is right end to end when every judged step answered
its expected label, so a step skipped where an answer was expected counts as wrong. Each model runs at its
production version; the accuracies carry bootstrap CIs (`workspace.evaluation.bootstrap`, `workspace.seed`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shoal.data.errors import DropRejected, Problem
from shoal.data.readers import LINE, read_table
from shoal.evaluate.classification import resample_indices
from shoal.pipelines.run import Answer, Outcome, checked_answers, run, step_answers
from shoal.pipelines.spec import Pipeline

if TYPE_CHECKING:
    from shoal.families.base import Predictor
    from shoal.workspace import Workspace

TEXT = "text"


def read_cases(path: Path, pipeline: Pipeline, tasks: dict[str, str]) -> tuple[list[str], dict[str, list[str | None]]]:
    """(inputs, expected label per judged step and input, None where not judged) of a pipeline test file."""
    frame = read_table(path)
    source = str(path)
    steps = {step.name: step for step in pipeline.steps}
    columns = [c for c in frame.columns if c != LINE]
    problems = []
    if TEXT not in columns:
        problems.append(Problem(None, f"no {TEXT!r} column (the pipeline's input); columns: {', '.join(columns)}"))
    for column in columns:
        if column == TEXT:
            continue
        if column not in steps:
            problems.append(Problem(None, f"column {column!r} is no step of the pipeline (steps: {', '.join(steps)})"))
        elif tasks[steps[column].model] != "text-classification":
            problems.append(Problem(None, f"column {column!r}: step {column!r} answers no label to judge"))
    if problems:
        raise DropRejected(source, problems)
    for column in columns:
        for line, value in zip(frame[LINE], frame[column], strict=True):
            if not (value is None or isinstance(value, str)) or (column == TEXT and not value):
                problems.append(
                    Problem(
                        int(line),
                        f"{column}: expected {'a text' if column == TEXT else 'a label or nothing'}, got {value!r}",
                    )
                )
    if problems:
        raise DropRejected(source, problems)
    expected = {c: [value or None for value in frame[c]] for c in columns if c != TEXT}
    return list(frame[TEXT]), expected


def production(ws: Workspace, pipeline: Pipeline) -> dict[str, tuple[int, str, Predictor]]:
    """(version, task, predictor) of each model of the pipeline at its production version."""
    from shoal.registry import PRODUCTION, RegistryError

    loaded = {}
    for model in pipeline.models:
        number = ws.registry.alias(model, PRODUCTION)
        if number is None:
            raise RegistryError(f"model {model!r} has no production version; train it with 'shoal train {model}'")
        loaded[model] = (number, ws.model(model).task, ws.load_predictor(ws.registry.version(model, number)))
    return loaded


async def outcomes(
    pipeline: Pipeline, inputs: list[Any], models: dict[str, tuple[int, str, Predictor]]
) -> list[Outcome]:
    """The pipeline's outcomes for `inputs`, each model predicting in a thread: each step's own model alone (a
    model's cascade, if it has one, is judged by `shoal eval MODEL`, not here)."""

    async def predict(model: str, version: int, items: list[Any], _positions: list[int]) -> list[Answer]:
        _, task, predictor = models[model]

        async def answer(good: list[Any]) -> list[dict[str, Any]]:
            return step_answers(task, predictor, good, await asyncio.to_thread(predictor.predict_proba, good))

        return await checked_answers(predictor, items, answer)

    return await run(pipeline, inputs, {model: number for model, (number, _, _) in models.items()}, predict)


def _accuracy(correct: np.ndarray, bootstrap: int, seed: int) -> dict[str, Any]:
    if not len(correct):
        return {"n": 0, "accuracy": None, "ci": None}
    boot = correct[resample_indices(len(correct), bootstrap, seed)].mean(axis=1)
    return {
        "n": len(correct),
        "accuracy": float(correct.mean()),
        "ci": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
    }


def score(
    results: list[Outcome], expected: dict[str, list[str | None]], *, bootstrap: int, seed: int
) -> dict[str, Any]:
    """End-to-end accuracy (rows with at least one judged step) and each judged step's, with CIs."""
    judged_rows = [i for i in range(len(results)) if any(labels[i] is not None for labels in expected.values())]
    right = np.ones(len(results), dtype=bool)
    steps = {}
    for step, labels in expected.items():
        rows = [i for i, label in enumerate(labels) if label is not None]
        answers = [results[i].steps.get(step) for i in rows]
        correct = np.array([a is not None and a["label"] == labels[i] for i, a in zip(rows, answers, strict=True)])
        right[rows] &= correct
        steps[step] = {**_accuracy(correct, bootstrap, seed), "skipped": sum(a is None for a in answers)}
    return {"end_to_end": _accuracy(right[judged_rows], bootstrap, seed), "steps": steps}


def evaluate_pipeline(ws: Workspace, name: str, path: Path | None = None) -> dict[str, Any]:
    """The pipeline `name` judged on its test file (`path`, else its `test:`), with the production versions."""
    from shoal.fleet import FleetError

    pipeline = ws.fleet.pipelines.get(name)
    if pipeline is None:
        known = ", ".join(sorted(ws.fleet.pipelines)) or "none"
        raise FleetError(f"no pipeline {name!r} in the fleet file (pipelines: {known})")
    if path is None:
        if pipeline.test is None:
            raise FleetError(f"pipelines.{name}.test: no test file; set it or give one with --data FILE")
        path = ws.root / pipeline.test
    models = production(ws, pipeline)
    inputs, expected = read_cases(path, pipeline, {model: task for model, (_, task, _) in models.items()})
    results = asyncio.run(outcomes(pipeline, inputs, models))
    settings = ws.fleet.workspace
    scores = score(results, expected, bootstrap=settings.evaluation.bootstrap, seed=settings.seed)
    stopped = [r.stopped_at for r in results if r.stopped_at is not None]
    return {
        "pipeline": name,
        "versions": {model: number for model, (number, _, _) in models.items()},
        "n": len(inputs),
        "stopped": {step: stopped.count(step) for step in dict.fromkeys(stopped)},
        **scores,
    }
