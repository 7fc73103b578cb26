"""A model's defaults chosen from its data, kept for its life.

At a model's first training its task picks defaults from the training data (`TaskKind.data_defaults`: for text
classification the metric and the class weighting, by class imbalance). They are recorded in the registry with the
profile they came from, before the first version exists, and every later training, `shoal eval`, `shoal check`,
the report and `shoal label` use the recorded ones: the data grows and its balance drifts, but a model's metric
never flips between trainings, so the gate always compares versions on the metric they were chosen by. A model
trained before defaults were chosen from data keeps the static defaults its versions were trained with (recorded as
such at its next training). Keys chosen together form a group (`ModelSpec.data_chosen_groups`: the metric and the
class weighting; the families alone): a fleet file that sets any key of a group keeps the static defaults for the
rest of that group.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal.data.sets import TrainSet
from shoal.fleet import ModelSpec
from shoal.registry import ModelDefaults
from shoal.registry.database import database_exists
from shoal.tasks import get_task
from shoal.workspace import Workspace

LEGACY = "kept the static defaults its versions were trained with (trained before defaults were chosen from data)"


@dataclass(frozen=True)
class Resolved:
    """The spec a model trains and is judged with, and the recorded defaults applied to it (None: none recorded)."""

    spec: ModelSpec
    kept: ModelDefaults | None


def settle(ws: Workspace, name: str, spec: ModelSpec, train: TrainSet) -> Resolved:
    """At a training: the recorded defaults, or (first training) the ones chosen from `train`, recorded now."""
    registry = ws.registry
    kept = registry.defaults(name)
    if kept is None:
        chosen = get_task(spec.task).data_defaults(train)
        if chosen is None:
            return Resolved(spec, None)
        settings, why = chosen.settings, chosen.why
        if registry.versions(name):
            settings = {key: type(spec).model_fields[key].get_default(call_default_factory=True) for key in settings}
            why = LEGACY
        kept = registry.keep_defaults(name, settings, chosen.profile, why)
    return Resolved(applied(spec, kept), kept)


def _groups(spec: ModelSpec, kept: ModelDefaults) -> list[list[str]]:
    """The recorded keys, by the groups they were chosen in."""
    groups = [[key for key in group if key in kept.settings] for group in spec.chosen_groups()]
    grouped = {key for group in groups for key in group}
    return [group for group in groups if group] + [[key] for key in kept.settings if key not in grouped]


def applied(spec: ModelSpec, kept: ModelDefaults | None) -> ModelSpec:
    """`spec` with the recorded defaults, group by group (`ModelSpec.data_chosen_groups`), where the fleet file sets
    no key of the group: a group's keys were chosen together (the class weighting goes with the metric it serves),
    so a fleet file that sets one of them keeps the static defaults for the others — a fleet that names its metric
    trains as it did before defaults came from data. The families are a group of their own."""
    if kept is None:
        return spec
    update = {
        key: kept.settings[key]
        for group in _groups(spec, kept)
        if not any(spec.given(key) for key in group)
        for key in group
    }
    return spec.model_copy(update=update) if update else spec


def resolved(ws: Workspace, name: str) -> Resolved:
    """The model's spec with its recorded defaults, without writing anything (no registry database is created)."""
    spec = ws.model(name)
    if not database_exists(ws.registry_url) or name not in ws.registry.model_names():
        return Resolved(spec, None)
    kept = ws.registry.defaults(name)
    return Resolved(applied(spec, kept), kept)


def _shown(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def describe(fleet_spec: ModelSpec, kept: ModelDefaults | None) -> str | None:
    """One line: each data-chosen key, its value and where it comes from, and why (None: this task chooses none)."""
    if kept is None:
        keys = [key for key in fleet_spec.data_chosen if not fleet_spec.given(key)]
        return f"{', '.join(keys)} to be chosen from the data at the first training" if keys else None
    parts, given = [], []
    for group in _groups(fleet_spec, kept):
        set_here = [key for key in group if fleet_spec.given(key)]
        if len(set_here) == len(group):  # all set in shoal.yaml: nothing of this group comes from anywhere else
            continue
        given += set_here
        for key in group:
            if not set_here:
                parts.append(f"{key} {_shown(kept.settings[key])}")
            else:
                where = "(set in shoal.yaml)" if key in set_here else "(static default)"
                parts.append(f"{key} {_shown(getattr(fleet_spec, key))} {where}")
    if not parts:
        return f"all set in shoal.yaml ({kept.why})"
    if not given:
        return f"{', '.join(parts)} — {kept.why}"
    sets = ", ".join(given)
    return f"{', '.join(parts)} — shoal.yaml sets {sets}, so the data's choice is not used for it ({kept.why})"
