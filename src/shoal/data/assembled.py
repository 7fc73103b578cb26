"""A model's data as its task assembles it from every stored drop: where training and the evaluations that judge
a model on its current test set (the cascade's) start, so they always see the same rows."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from shoal.tasks import get_task
from shoal.workspace import Workspace


@dataclass(frozen=True)
class Assembled:
    dataset_version: str  # the set of drops the rows came from
    train: pd.DataFrame
    test: pd.DataFrame
    notes: list[str]  # what the assembly did to the rows (relabelled, merged, left out)


def assembled(ws: Workspace, name: str) -> Assembled | None:
    """Model `name`'s training and test rows from all of its drops; None before its first drop."""
    spec, registry = ws.model(name), ws.registry
    drops = registry.drops(name) if name in registry.model_names() else []
    if not drops:
        return None
    train, test, notes = get_task(spec.task).assemble(registry.load_drops(drops), spec)
    return Assembled(registry.dataset_version(name, drops), train, test, notes)
