"""Task kinds: the data schema, validation and split rule of each kind of model."""

from __future__ import annotations

from shoal.tasks.base import TaskKind, Validated


def get_task(name: str) -> TaskKind:
    if name == "text-classification":
        from shoal.tasks.text_classification import TextClassification

        return TextClassification()
    raise NotImplementedError(f"task {name!r} is declared in the fleet schema but not implemented yet")


__all__ = ["TaskKind", "Validated", "get_task"]
