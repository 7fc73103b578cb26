"""A pipeline judged end to end on its test set (`shoal.pipelines.testset`), with the runner the server uses:
`shoal eval --pipeline`, the score recorded when a model of the pipeline changes production version
(`shoal.pipelines.history`) and the gate's pipeline rule all judge here.

An input is right end to end when every judged step answered
its expected label, so a step skipped where an answer was expected counts as wrong. Each model runs at its
production version; the accuracies carry bootstrap CIs (`workspace.evaluation.bootstrap`, `workspace.seed`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shoal.evaluate.classification import resample_indices
from shoal.pipelines.run import Answer, Outcome, checked_answers, run, step_answers
from shoal.pipelines.spec import Pipeline
from shoal.pipelines.testset import PipelineCases, no_test_set, pipeline_cases

if TYPE_CHECKING:
    from shoal.families.base import Predictor
    from shoal.workspace import Workspace


def production_versions(ws: Workspace, pipeline: Pipeline) -> dict[str, int]:
    """Each model of the pipeline's production version (a RegistryError names a model without one)."""
    from shoal.registry import PRODUCTION, RegistryError

    versions = {}
    for model in pipeline.models:
        number = ws.registry.alias(model, PRODUCTION)
        if number is None:
            raise RegistryError(f"model {model!r} has no production version; train it with 'shoal train {model}'")
        versions[model] = number
    return versions


def load(ws: Workspace, versions: dict[str, int]) -> dict[str, tuple[int, str, Predictor]]:
    """(version, task, predictor) of each model at the given version."""
    return {
        model: (number, ws.model(model).task, ws.load_predictor(ws.registry.version(model, number)))
        for model, number in versions.items()
    }


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


def correctness(results: list[Outcome], expected: dict[str, list[str | None]]) -> tuple[np.ndarray, dict[str, Any]]:
    """(right end to end, for each input with at least one judged step; per judged step: (right for each input it
    is judged on, how many of those it skipped))."""
    judged_rows = [i for i in range(len(results)) if any(labels[i] is not None for labels in expected.values())]
    right = np.ones(len(results), dtype=bool)
    steps = {}
    for step, labels in expected.items():
        rows = [i for i, label in enumerate(labels) if label is not None]
        answers = [results[i].steps.get(step) for i in rows]
        correct = np.array(
            [a is not None and a["label"] == labels[i] for i, a in zip(rows, answers, strict=True)], dtype=bool
        )
        right[rows] &= correct
        steps[step] = (correct, sum(a is None for a in answers))
    return right[judged_rows], steps


def judge(pipeline: Pipeline, cases: PipelineCases, models: dict[str, tuple[int, str, Predictor]]) -> list[Outcome]:
    """The pipeline's outcomes on the test inputs with each model's loaded version (`load`)."""
    return asyncio.run(outcomes(pipeline, cases.inputs, models))


def report(
    ws: Workspace, name: str, cases: PipelineCases, versions: dict[str, int], results: list[Outcome] | None = None
) -> dict[str, Any]:
    """End-to-end accuracy (inputs with at least one judged step) and each judged step's, with CIs, at `versions`
    (`results`: the pipeline's outcomes on the cases at those versions when already run)."""
    if results is None:
        results = judge(ws.fleet.pipeline(name), cases, load(ws, versions))
    settings = ws.fleet.workspace
    bootstrap, seed = settings.evaluation.bootstrap, settings.seed
    right, steps = correctness(results, cases.expected)
    stopped = [r.stopped_at for r in results if r.stopped_at is not None]
    return {
        "pipeline": name,
        "versions": versions,
        "test_set": cases.describe(),
        "n": len(cases.inputs),
        "stopped": {step: stopped.count(step) for step in dict.fromkeys(stopped)},
        "end_to_end": _accuracy(right, bootstrap, seed),
        "steps": {
            step: {**_accuracy(correct, bootstrap, seed), "skipped": skipped}
            for step, (correct, skipped) in steps.items()
        },
    }


def evaluate_pipeline(ws: Workspace, name: str, path: Path | None = None) -> dict[str, Any]:
    """The pipeline `name` judged with the production versions on `path`, else on its test set (`pipeline_cases`)."""
    from shoal.fleet import FleetError

    pipeline = ws.fleet.pipeline(name)
    cases = pipeline_cases(ws, name, path)
    if cases is None:
        raise FleetError(f"{no_test_set(name)}; or give a file with --data FILE")
    return report(ws, name, cases, production_versions(ws, pipeline))
