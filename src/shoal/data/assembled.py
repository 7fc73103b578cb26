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


def assembled(ws: Workspace, name: str, dataset_version: str | None = None) -> Assembled | None:
    """Model `name`'s training and test rows from all of its drops, or from the drops that made `dataset_version`
    (the drops a version was trained on: drops are only ever added, so they are the oldest ones whose hash is that
    version's); None before its first drop or when no set of its drops has that hash."""
    spec, registry = ws.model(name), ws.registry
    drops = registry.drops(name) if name in registry.model_names() else []
    if dataset_version is not None:
        drops = next(
            (
                drops[:k]
                for k in range(len(drops), 0, -1)
                if registry.dataset_version(name, drops[:k]) == dataset_version
            ),
            [],
        )
    if not drops:
        return None
    train, test, notes = get_task(spec.task).assemble(registry.load_drops(drops), spec)
    return Assembled(registry.dataset_version(name, drops), train, test, notes)
