"""Model families, registered by name. `get_family("tfidf-logreg")` returns an instance."""

from __future__ import annotations

import importlib

from shoal.families.base import Family, Params, Predictor

_REGISTRY: dict[str, type[Family]] = {}
#: built-in families and the module that defines each; imported on first use so heavy ones stay lazy
_BUILTIN = {
    "majority": "shoal.families.majority",
    "minilm-logreg": "shoal.families.minilm_logreg",
    "minilm-logreg-int8": "shoal.families.minilm_logreg",
    "setfit": "shoal.families.setfit",
    "static-logreg": "shoal.families.static_logreg",
    "tfidf-logreg": "shoal.families.tfidf_logreg",
    "tfidf-svm": "shoal.families.tfidf_svm",
}


def register(cls: type[Family]) -> type[Family]:
    """Class decorator: make a family available by its `name`."""
    _REGISTRY[cls.name] = cls
    return cls


def family_names() -> list[str]:
    return sorted(set(_BUILTIN) | set(_REGISTRY))


def get_family(name: str) -> Family:
    if name not in _REGISTRY and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise KeyError(f"unknown family {name!r}; known: {', '.join(family_names())}") from None


def check_families(task: str, names: list[str]) -> str | None:
    """Why these families cannot serve `task`, or None when they all can."""
    for name in names:
        if name not in family_names():
            return f"unknown family {name!r}; allowed: {', '.join(family_names())}"
        family = get_family(name)
        if family.task != task:
            return f"family {name!r} is for task {family.task!r}, not {task!r}"
    return None


__all__ = ["Family", "Params", "Predictor", "check_families", "family_names", "get_family", "register"]
