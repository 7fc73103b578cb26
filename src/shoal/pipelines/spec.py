"""The fleet file's `pipelines:` — named, ordered steps over the fleet's models — and their cross-checks.

    pipelines:
      inbox:
        steps:
          - model: spam                      # the step's name is its model's unless `name:` is given
            stop: {label: [spam]}            # a spam text ends here, answered by this step
          - model: intent
            when: {step: spam, label: [ham], probability_above: 0.8}
          - model: sentiment                 # independent of `intent`: both run side by side (fan-out)
            when: {step: spam, label: [ham]}
          - name: volume
            model: intent-volume             # a forecasting model keyed by the intent's label
            input: {from: intent, field: label}
        gate: {no_significant_drop: true}    # a model of the pipeline is promoted only if the pipeline holds up

A step reads the pipeline's input unless `input:` names a text field of an earlier step's answer. It runs for an
input only when its `when:` matches an earlier step's answer (every condition given must hold) and the step it reads
from answered; `stop:` ends the pipeline for an input whose answer of this step matches, and the later steps are
skipped. Steps that depend neither on each other nor on an earlier `stop:` run at the same time (`Pipeline.waves`).

`check_pipelines` checks what the fields alone cannot: models exist and have a predict endpoint, `when:` and `input:`
name an earlier step, kinds fit (a label condition needs a labelled answer, a fed field must be text the next model
reads, the steps that read the pipeline's input read the same kind). Its messages name the key path.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, model_validator

from shoal.fleet import _NAME, _Strict

if TYPE_CHECKING:
    from shoal.fleet import Fleet

StepName = Annotated[str, Field(pattern=_NAME.pattern)]


class Match(_Strict):
    """Conditions on one step's answer; every one given must hold."""

    label: list[str] | None = Field(None, min_length=1, description="the answer's label is one of these")
    probability_above: float | None = Field(None, ge=0, le=1, description="the answer's probability is above this")
    probability_below: float | None = Field(None, ge=0, le=1, description="the answer's probability is below this")

    @model_validator(mode="after")
    def _some(self) -> Match:
        if self.label is None and self.probability_above is None and self.probability_below is None:
            raise ValueError("give label, probability_above or probability_below")
        return self

    def miss(self, answer: dict[str, Any]) -> str | None:
        """Why `answer` does not match (None when it does)."""
        label, probability = answer["label"], answer["probability"]
        if self.label is not None and label not in self.label:
            return f"label {label!r} is not one of {', '.join(map(repr, self.label))}"
        if self.probability_above is not None and not probability > self.probability_above:
            return f"probability {probability:.4g} is not above {self.probability_above:g}"
        if self.probability_below is not None and not probability < self.probability_below:
            return f"probability {probability:.4g} is not below {self.probability_below:g}"
        return None


class When(Match):
    """Run a step only for inputs whose answer of an earlier `step` matches."""

    step: str = Field(description="an earlier step of the pipeline")


class StepInput(_Strict):
    """A step's input taken from an earlier step's answer instead of the pipeline's input."""

    source: str = Field(alias="from", description="an earlier step of the pipeline")
    field: str = Field(description="a text field of that step's answer, e.g. label")


class Step(_Strict):
    name: StepName = Field(description="the step's name in answers (default: its model's)")
    model: str = Field(description="a model of the fleet")
    when: When | None = Field(None, description="run only when an earlier step's answer matches")
    stop: Match | None = Field(None, description="end the pipeline for an input whose answer here matches")
    input: StepInput | None = Field(None, description="read a field of an earlier answer (default: the input)")

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name" not in data and isinstance(data.get("model"), str):
            return {"name": data["model"], **data}
        return data

    def sources(self) -> set[str]:
        """The steps this one reads (its condition's and its input's)."""
        found = {self.when.step} if self.when is not None else set()
        return found | ({self.input.source} if self.input is not None else set())


class PipelineGate(_Strict):
    """A rule the gate adds for every model of the pipeline (`shoal.gate`): a challenger is refused when the
    pipeline's end-to-end accuracy on its test set, with the challenger in place of the production version, drops
    significantly (McNemar's test, as a model's own accuracy is judged)."""

    no_significant_drop: bool = Field(True, description="refuse a challenger that lowers end-to-end accuracy")
    alpha: float | None = Field(
        None, gt=0, lt=1, description="significance level of the paired test (default: the model's gate.alpha)"
    )


class Pipeline(_Strict):
    description: str | None = None
    test: str | None = Field(
        None,
        description="labelled test file, relative to the workspace: a text column, one label column per step "
        "(used while no test drop is registered with 'shoal ingest --pipeline')",
    )
    gate: PipelineGate | None = Field(None, description="judge each model of the pipeline in the pipeline too")
    steps: list[Step] = Field(min_length=1, description="run in order; independent steps run side by side")

    @cached_property
    def models(self) -> list[str]:
        return list(dict.fromkeys(step.model for step in self.steps))

    @cached_property
    def waves(self) -> list[list[Step]]:
        """The steps in groups that run at the same time: a step runs after the steps it reads and after every
        earlier step that may stop the pipeline (worked out once: the server asks per request)."""
        level: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            after = step.sources() | {s.name for s in self.steps[:i] if s.stop is not None}
            level[step.name] = 1 + max((level[name] for name in after), default=-1)
        waves: list[list[Step]] = [[] for _ in range(max(level.values()) + 1)]
        for step in self.steps:
            waves[level[step.name]].append(step)
        return waves


def _answer_fields(task: str) -> dict[str, Any]:
    from shoal.tasks import get_codec

    return {name: field.annotation for name, field in get_codec(task).answer.model_fields.items()}


def _reads(task: str) -> Any:
    from shoal.tasks import get_codec

    return get_codec(task).request.model_fields["inputs"].annotation


def _text_fields(task: str) -> list[str]:
    return [name for name, kind in _answer_fields(task).items() if kind is str]


def check_pipelines(fleet: Fleet) -> list[str]:
    """Every problem of the fleet's pipelines as 'key.path: message' (empty when they are sound)."""
    from shoal.tasks import get_codec

    problems = []
    for name, pipeline in fleet.pipelines.items():
        tasks: dict[str, str | None] = {}  # step -> its model's task (None: already reported), for the earlier steps
        models: dict[str, str] = {}  # step -> its model, for the earlier steps
        direct: tuple[str, Any] | None = None  # the first step reading the pipeline's input, and what it reads
        for i, step in enumerate(pipeline.steps):
            path = f"pipelines.{name}.steps.{i}"
            if step.name in tasks:
                problems.append(f"{path}.name: step {step.name!r} comes twice; give one of them another name")
                continue
            tasks[step.name] = None
            spec = fleet.models.get(step.model)
            if spec is None:
                known = ", ".join(sorted(fleet.models)) or "none yet"
                problems.append(f"{path}.model: no model {step.model!r} in the fleet (models: {known})")
                continue
            codec = get_codec(spec.task)
            if codec.endpoint != "predict":
                problems.append(f"{path}.model: {step.model!r} is a {spec.task} model; a step needs a predict model")
                continue
            for key, match, source in (("when", step.when, step.when), ("stop", step.stop, None)):
                if match is None:
                    continue
                where = f"{path}.{key}"
                task: str | None = spec.task
                answering = step.model
                if source is not None:
                    if source.step not in tasks or source.step == step.name:
                        problems.append(f"{where}.step: {_not_earlier(source.step, step, pipeline)}")
                        continue
                    task, answering = tasks[source.step], models[source.step]
                if task is not None and not {"label", "probability"} <= _answer_fields(task).keys():
                    problems.append(f"{where}: a {task} answer has no label and probability to match")
                declared = getattr(fleet.models[answering], "labels", None)
                unknown = [label for label in match.label or [] if declared is not None and label not in declared]
                if unknown:
                    problems.append(
                        f"{where}.label: {', '.join(map(repr, unknown))} not among the labels model {answering!r} "
                        f"declares ({', '.join(declared)}); this condition would never match"
                    )
            if step.input is None:
                reads = _reads(spec.task)
                if direct is None:
                    direct = (step.name, reads)
                elif reads != direct[1]:
                    problems.append(
                        f"{path}.model: {step.model!r} ({spec.task}) reads another kind of input than step "
                        f"{direct[0]!r}, which reads the pipeline's input too; feed it with 'input: {{from, field}}'"
                    )
            else:
                source_task = tasks.get(step.input.source)
                if step.input.source not in tasks or step.input.source == step.name:
                    problems.append(f"{path}.input.from: {_not_earlier(step.input.source, step, pipeline)}")
                elif source_task is not None and step.input.field not in _text_fields(source_task):
                    fields = ", ".join(_text_fields(source_task)) or "none"
                    problems.append(
                        f"{path}.input.field: a {source_task} answer has no text field {step.input.field!r} "
                        f"(text fields: {fields})"
                    )
                elif not codec.accepts("text"):
                    problems.append(f"{path}.input: {step.model!r} ({spec.task}) does not read a text")
            tasks[step.name], models[step.name] = spec.task, step.model
    return problems


def _not_earlier(name: str, step: Step, pipeline: Pipeline) -> str:
    names = [s.name for s in pipeline.steps]
    if name not in names:
        return f"no step {name!r} in this pipeline (steps: {', '.join(names)})"
    if name == step.name:
        return f"step {name!r} cannot read itself"
    return f"step {name!r} comes later; a step reads only earlier steps (a cycle otherwise)"
