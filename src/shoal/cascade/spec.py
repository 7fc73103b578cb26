"""The `cascade:` key of a classification model in the fleet file, and the checks that need the whole fleet."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from shoal.fleet import Fleet


class CascadeSpec(BaseModel):
    """Answer with this model when it is sure, else with `fallback` (another model of the fleet)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, defer_build=True)

    fallback: str = Field(description="the model of the fleet that answers the inputs this one is unsure of")
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
    gate: bool = Field(False, description="promote a new version only if the cascade's accuracy does not drop")

    @model_validator(mode="after")
    def _one_target(self) -> CascadeSpec:
        if (self.target_accuracy is None) == (self.max_deferral is None):
            raise ValueError("set exactly one of target_accuracy and max_deferral")
        return self


def cascade_problems(fleet: Fleet) -> list[str]:
    """What is wrong with the fleet's cascades, each naming its key path: a fallback that is not another model of
    the fleet with the same task and the same declared labels, or a chain of fallbacks that comes back."""
    problems = []
    for name, spec in fleet.models.items():
        cascade: CascadeSpec | None = getattr(spec, "cascade", None)
        if cascade is None:
            continue
        key = f"models.{name}.cascade.fallback"
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
        if cascade is None:
            return False
        name = cascade.fallback
        if name in seen:
            return name == start
        seen.add(name)
