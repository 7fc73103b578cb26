"""Model families, registered by name. `get_family("tfidf-logreg")` returns an instance.

One module per family (an fp32 family and its int8 form share one), beside the bases families of a kind share
(`base`, `tabular`, `forest`, `forecast`, `statsforecast_family`, `embedding_family`, `tuned_family`). What the
families run on (encoders, tokenizer, torch body, linear head, ...) is in `runtime/`, which registers nothing.
"""

from __future__ import annotations

import importlib

from shoal.families.base import Family, Params, Predictor

_REGISTRY: dict[str, type[Family]] = {}
#: built-in families: the module that defines each (imported on first use so heavy ones stay lazy) and its task
_TC, _REG, _FC, _EMB = "text-classification", "regression", "forecasting", "embedding"
_TOK = "token-classification"
_BUILTIN = {
    "majority": ("shoal.families.majority", _TC),
    "minilm-logreg": ("shoal.families.minilm_logreg", _TC),
    "minilm-logreg-int8": ("shoal.families.minilm_logreg", _TC),
    "minilm-finetune": ("shoal.families.minilm_finetune", _TC),
    "minilm-finetune-int8": ("shoal.families.minilm_finetune", _TC),
    "setfit": ("shoal.families.setfit", _TC),
    "setfit-int8": ("shoal.families.setfit", _TC),
    "static-logreg": ("shoal.families.static_logreg", _TC),
    "tfidf-logreg": ("shoal.families.tfidf_logreg", _TC),
    "tfidf-svm": ("shoal.families.tfidf_svm", _TC),
    "mean": ("shoal.families.mean", _REG),
    "ridge": ("shoal.families.ridge", _REG),
    "gbm": ("shoal.families.gbm", _REG),
    "gbm-tuned": ("shoal.families.gbm_tuned", _REG),
    "random-forest": ("shoal.families.random_forest", _REG),
    "extra-trees": ("shoal.families.extra_trees", _REG),
    "seasonal-naive": ("shoal.families.seasonal_naive", _FC),
    "auto-ets": ("shoal.families.auto_ets", _FC),
    "auto-arima": ("shoal.families.auto_arima", _FC),
    "gbm-lags": ("shoal.families.gbm_lags", _FC),
    "static-embed": ("shoal.families.sentence_embedder", _EMB),
    "minilm-embed": ("shoal.families.sentence_embedder", _EMB),
    "minilm-embed-int8": ("shoal.families.sentence_embedder", _EMB),
    "memorized": ("shoal.families.memorized", _TOK),
    "crf": ("shoal.families.crf", _TOK),
    "static-crf": ("shoal.families.static_crf", _TOK),
    "minilm-tagger": ("shoal.families.minilm_tagger", _TOK),
    "minilm-tagger-int8": ("shoal.families.minilm_tagger", _TOK),
}


def register(cls: type[Family]) -> type[Family]:
    """Class decorator: make a family available by its `name`."""
    _REGISTRY[cls.name] = cls
    return cls


def _tasks() -> dict[str, str]:
    """Each family's task, without importing the built-in families' modules."""
    return {name: task for name, (_, task) in _BUILTIN.items()} | {n: c.task for n, c in _REGISTRY.items()}


def family_names(task: str | None = None) -> list[str]:
    """Every family, or those of one task."""
    return sorted(name for name, of in _tasks().items() if task is None or of == task)


def get_family(name: str) -> Family:
    if name not in _REGISTRY and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name][0])
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise KeyError(f"unknown family {name!r}; known: {', '.join(family_names())}") from None


def check_families(task: str, names: list[str]) -> str | None:
    """Why these families cannot serve `task`, or None when they all can. Imports no family module, so
    validating a fleet file stays light."""
    tasks = _tasks()
    for name in names:
        if name not in tasks:
            return f"unknown family {name!r}; allowed: {', '.join(family_names(task))}"
        if tasks[name] != task:
            return f"family {name!r} is for task {tasks[name]!r}, not {task!r}"
    return None


__all__ = ["Family", "Params", "Predictor", "check_families", "family_names", "get_family", "register"]
