"""Running a pipeline over a list of inputs: the one routing code the server and the evaluation share.

The runner knows nothing of HTTP or the registry: it is given, per model, the version to use for the whole run
(a snapshot: a swap during the run never mixes two versions of a model) and an async `predict(model, version,
inputs, positions)` answering every input with the task's JSON-ready answer (`step_answers`), or with a `Rejected`
when the model cannot read that input (e.g. a label fed to a forecasting model that has no such series). Each step is
called once per run with all the inputs that reach it, and the independent steps of a wave are awaited together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shoal.families.base import Predictor
from shoal.pipelines.spec import Pipeline, Step
from shoal.tasks import get_codec
from shoal.tasks.codec import Parsed


@dataclass(frozen=True)
class Rejected:
    """A model could not read one input (its reason, without the input's index)."""

    reason: str


Answer = dict[str, Any] | Rejected
#: predict(model, version, inputs, positions): `positions` are the indices of the run's inputs these inputs belong to
Predict = Callable[[str, int, list[Any], list[int]], Awaitable[list[Answer]]]


@dataclass
class Outcome:
    """One input's way through a pipeline: each step's answer (with its model and version) or why it was skipped,
    and the step that stopped it."""

    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    stopped_at: str | None = None

    def ordered(self, pipeline: Pipeline) -> dict[str, Any]:
        """JSON-ready, steps in the pipeline's order."""
        names = [step.name for step in pipeline.steps]
        return {
            "steps": {name: self.steps[name] for name in names if name in self.steps},
            "skipped": {name: self.skipped[name] for name in names if name in self.skipped},
            "stopped_at": self.stopped_at,
        }


def step_answers(task: str, predictor: Predictor, inputs: list[Any], outputs: np.ndarray) -> list[dict[str, Any]]:
    """The answers of a step's model to `inputs`, as its predict route writes them with no options."""
    codec = get_codec(task)
    return codec.answers(outputs, predictor, Parsed(inputs, codec.fast_options({"inputs": inputs}) or {}))


async def checked_answers(
    predictor: Predictor, items: list[Any], answer: Callable[[list[Any]], Awaitable[list[dict[str, Any]]]]
) -> list[Answer]:
    """The answers to `items` (`answer` answers those `predictor` can read), with a `Rejected` for each item it
    cannot read: only the others are predicted."""
    bad: dict[int, str] = {}
    if predictor.check_inputs(items):
        for i, item in enumerate(items):
            problems = predictor.check_inputs([item])
            if problems:
                bad[i] = problems[0].split(": ", 1)[-1]  # without its 'inputs[0]: '
    good = [item for i, item in enumerate(items) if i not in bad]
    answers = iter(await answer(good) if good else [])
    return [Rejected(bad[i]) if i in bad else next(answers) for i in range(len(items))]


async def run(pipeline: Pipeline, inputs: list[Any], versions: Mapping[str, int], predict: Predict) -> list[Outcome]:
    """Every input's outcome through `pipeline`, each model at `versions[model]`."""
    outcomes = [Outcome() for _ in inputs]
    for wave in pipeline.waves:
        if len(wave) == 1:  # no task to gather
            await _step(wave[0], inputs, outcomes, versions[wave[0].model], predict)
        else:
            await asyncio.gather(*(_step(step, inputs, outcomes, versions[step.model], predict) for step in wave))
        for step in wave:
            if step.stop is None:
                continue
            for outcome in outcomes:
                answer = outcome.steps.get(step.name)
                if outcome.stopped_at is None and answer is not None and step.stop.miss(answer) is None:
                    outcome.stopped_at = step.name
    return outcomes


def _blocked(step: Step, outcome: Outcome) -> str | None:
    """Why `step` does not run for an input with `outcome` so far (None: it runs)."""
    if outcome.stopped_at is not None:
        return f"stopped at step {outcome.stopped_at!r}"
    if step.when is not None:
        earlier = outcome.steps.get(step.when.step)
        if earlier is None:
            return f"when: step {step.when.step!r} did not answer"
        miss = step.when.miss(earlier)
        if miss is not None:
            return f"when: step {step.when.step!r}'s {miss}"
    if step.input is not None and step.input.source not in outcome.steps:
        return f"input: step {step.input.source!r} did not answer"
    return None


async def _step(step: Step, inputs: list[Any], outcomes: list[Outcome], version: int, predict: Predict) -> None:
    reached, fed, positions = [], [], []
    for position, (item, outcome) in enumerate(zip(inputs, outcomes, strict=True)):
        reason = _blocked(step, outcome)
        if reason is not None:
            outcome.skipped[step.name] = reason
            continue
        reached.append(outcome)
        fed.append(item if step.input is None else outcome.steps[step.input.source][step.input.field])
        positions.append(position)
    if not fed:
        return
    answers = await predict(step.model, version, fed, positions)
    for outcome, answer in zip(reached, answers, strict=True):
        if isinstance(answer, Rejected):
            outcome.skipped[step.name] = f"{step.model!r} cannot read its input: {answer.reason}"
        else:
            outcome.steps[step.name] = {"model": step.model, "version": version, **answer}
