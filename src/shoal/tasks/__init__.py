"""Task kinds: the data schema, validation, split rule and judging of each kind of model."""

from __future__ import annotations

import importlib

from shoal.tasks.base import TaskKind, Validated

#: implemented task kinds and the class defining each; imported on first use
_KINDS = {
    "text-classification": ("shoal.tasks.text_classification", "TextClassification"),
    "regression": ("shoal.tasks.regression", "Regression"),
    "forecasting": ("shoal.tasks.forecasting", "Forecasting"),
    "embedding": ("shoal.tasks.embedding", "Embedding"),
}


def get_task(name: str) -> TaskKind:
    if name not in _KINDS:
        raise NotImplementedError(f"task {name!r} is declared in the fleet schema but not implemented yet")
    module, cls = _KINDS[name]
    return getattr(importlib.import_module(module), cls)()  # type: ignore[no-any-return]


__all__ = ["TaskKind", "Validated", "get_task"]
