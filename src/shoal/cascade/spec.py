"""The `cascade:` key of a classification model in the fleet file, and the checks that need the whole fleet.

The fallback is another model of the fleet (its name) or an LLM endpoint of the fleet file's `llm:` section:

    cascade:
      fallback: {llm: local, prompt: "Which banking intent is this? One of {labels}."}
      max_deferral: 0.2
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

if TYPE_CHECKING:
    from shoal.fleet import Fleet

#: the tags pydantic puts in the key path of a fallback's errors (the fleet file's error messages leave them out)
MODEL_TAG, LLM_TAG = "fleet-model", "llm-endpoint"
FALLBACK_TAGS = (MODEL_TAG, LLM_TAG)


class LLMFallbackSpec(BaseModel):
    """A cascade's fallback that is an LLM endpoint."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, defer_build=True)

    llm: str = Field(description="an endpoint of the fleet file's llm: section")
    prompt: str | None = Field(
        None, description="this model's instruction to the LLM ({labels} is replaced by the labels)"
    )


def _fallback_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return MODEL_TAG
    return LLM_TAG if isinstance(value, dict | LLMFallbackSpec) else None


FallbackSpec = Annotated[
    Annotated[str, Tag(MODEL_TAG)] | Annotated[LLMFallbackSpec, Tag(LLM_TAG)],
    Discriminator(
        _fallback_kind,
        custom_error_type="fallback",
        custom_error_message="give a model of the fleet or {llm: ENDPOINT, prompt: ...}",
    ),
]


class CascadeSpec(BaseModel):
    """Answer with this model when it is sure, else with `fallback` (another model of the fleet or an LLM)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, defer_build=True)

    fallback: FallbackSpec = Field(
        description="what answers the inputs this one is unsure of: a model of the fleet, or {llm: ENDPOINT, prompt: "
        "...} for an endpoint of the llm: section"
    )
    target_accuracy: float | None = Field(
        None,
        gt=0,
        le=1,
        description="defer every input below the lowest confidence at which the inputs this model keeps reach this "
        "accuracy on its out-of-fold predictions (its selective accuracy)",
    )
    max_deferral: float | None = Field(
        None, ge=0, le=1, description="defer this fraction of inputs, the least confident (on out-of-fold predictions)"
    )
    max_fallback_per_second: float | None = Field(
        None, gt=0, description="inputs per second the fallback may take; beyond, this model answers (marked)"
    )
    max_fallback_cost_per_day: float | None = Field(
        None,
        gt=0,
        description="$ the fallback may spend per UTC day (by its cost per million); beyond, this model answers",
    )
    fallback_timeout_s: float = Field(
        5.0,
        gt=0,
        description="how long a request waits for the fallback; past it (or when the fallback fails) this model "
        "answers, marked small-fallback-down, and the fallback is skipped for fallback_cooldown_s",
    )
    fallback_cooldown_s: float = Field(
        5.0, ge=0, description="after the fallback timed out or failed, how long this model answers alone"
    )
    gate: bool = Field(False, description="promote a new version only if the cascade's accuracy does not drop")

    @model_validator(mode="after")
    def _one_target(self) -> CascadeSpec:
        if (self.target_accuracy is None) == (self.max_deferral is None):
            raise ValueError("set exactly one of target_accuracy and max_deferral")
        if self.gate and self.fallback_llm is not None:
            raise ValueError("gate: true needs a fallback model of the fleet (an LLM is not judged on the test set)")
        return self

    @property
    def fallback_model(self) -> str | None:
        """The fleet model that is the fallback (None for an LLM)."""
        return self.fallback if isinstance(self.fallback, str) else None

    @property
    def fallback_llm(self) -> LLMFallbackSpec | None:
        return None if isinstance(self.fallback, str) else self.fallback

    @property
    def fallback_name(self) -> str:
        """The fallback as answers and reports name it: the model, or `llm:ENDPOINT`."""
        return self.fallback if isinstance(self.fallback, str) else f"llm:{self.fallback.llm}"


def model_cascade(spec: Any) -> CascadeSpec | None:
    """The cascade a model is served with: its `cascade:` key; else, for a model that started cold on an LLM (its
    `llm:` key), that LLM as the fallback of its small versions, deferring the declared share (`max_deferral`)."""
    declared: CascadeSpec | None = getattr(spec, "cascade", None)
    cold = getattr(spec, "llm", None)
    if declared is not None or cold is None:
        return declared
    return CascadeSpec(
        fallback=LLMFallbackSpec(llm=cold.endpoint, prompt=cold.prompt),
        max_deferral=cold.max_deferral,
        fallback_timeout_s=cold.timeout_s,
        fallback_cooldown_s=cold.cooldown_s,
    )


def cascade_problems(fleet: Fleet) -> list[str]:
    """What is wrong with the fleet's cascades, each naming its key path: a fallback that is not another model of
    the fleet with the same task and the same declared labels, a chain of fallbacks that comes back, or an LLM
    endpoint the `llm:` section does not declare (a cascade's, or a model's own `llm:` key)."""
    problems = []
    for name, spec in fleet.models.items():
        cold = getattr(spec, "llm", None)
        if cold is not None and cold.endpoint not in fleet.llm:
            known = ", ".join(sorted(fleet.llm)) or "none"
            problems.append(
                f"models.{name}.llm.endpoint: no endpoint {cold.endpoint!r} in the fleet file's llm: section ({known})"
            )
        cascade: CascadeSpec | None = getattr(spec, "cascade", None)
        if cascade is None:
            continue
        key = f"models.{name}.cascade.fallback"
        if cascade.fallback_llm is not None:
            endpoint = cascade.fallback_llm.llm
            if endpoint not in fleet.llm:
                known = ", ".join(sorted(fleet.llm)) or "none"
                problems.append(f"{key}.llm: no endpoint {endpoint!r} in the fleet file's llm: section ({known})")
            continue
        other = fleet.models.get(cascade.fallback)
        if cascade.fallback == name:
            problems.append(f"{key}: a model cannot be its own fallback")
        elif other is None:
            known = ", ".join(sorted(m for m in fleet.models if m != name)) or "none"
            problems.append(f"{key}: no model {cascade.fallback!r} in the fleet (models: {known})")
        elif other.task != spec.task:
            problems.append(f"{key}: {cascade.fallback!r} is a {other.task} model, {name!r} a {spec.task} model")
        else:
            ours, theirs = getattr(spec, "labels", None), getattr(other, "labels", None)
            if ours is not None and theirs is not None and set(ours) != set(theirs):
                problems.append(f"{key}: {cascade.fallback!r} declares other labels than {name!r}")
            elif _comes_back(fleet, name):
                problems.append(f"{key}: the chain of fallbacks comes back to {name!r}")
    return problems


def _comes_back(fleet: Fleet, start: str) -> bool:
    seen, name = {start}, start
    while True:
        cascade = getattr(fleet.models.get(name), "cascade", None)
        if cascade is None or cascade.fallback_model is None:
            return False
        name = cascade.fallback_model
        if name in seen:
            return name == start
        seen.add(name)
