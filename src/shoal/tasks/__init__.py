"""Task kinds, one package each (`shoal.tasks.<package>`), the whole home of its kind:

- `spec`: its fleet-file fields (a pydantic model keyed on `task`), metrics, defaults and their validation;
- `kind`: its `TaskKind` — data schema, validation, split rule, how its models are judged, report columns;
- `codec`: how its predict requests are read and its answers written, with their OpenAPI models.

The fleet file, the trainer, the server and the CLI find every task here, so a new task kind is a new
package and one line in `_HOMES`. This module stays light: a task's modules are imported on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shoal.fleet import ModelSpec
    from shoal.tasks.base import TaskKind
    from shoal.tasks.codec import Codec


@dataclass(frozen=True)
class Home:
    """Where a task kind lives: its package and the class its `spec`, `kind` and `codec` modules define."""

    package: str
    spec: str
    kind: str
    codec: str

    def load(self, module: str, name: str) -> Any:
        return getattr(importlib.import_module(f"shoal.tasks.{self.package}.{module}"), name)


#: every task kind by its name in the fleet file (the `task` its spec's literal names)
_HOMES = {
    "text-classification": Home(
        "text_classification", "TextClassificationSpec", "TextClassification", "TextClassificationCodec"
    ),
    "regression": Home("regression", "RegressionSpec", "Regression", "RegressionCodec"),
    "forecasting": Home("forecasting", "ForecastingSpec", "Forecasting", "ForecastingCodec"),
    "embedding": Home("embedding", "EmbeddingSpec", "Embedding", "EmbeddingCodec"),
    "token-classification": Home(
        "token_classification", "TokenClassificationSpec", "TokenClassification", "TokenClassificationCodec"
    ),
}


def task_names() -> tuple[str, ...]:
    return tuple(_HOMES)


def _home(name: str) -> Home:
    try:
        return _HOMES[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; tasks: {', '.join(_HOMES)}") from None


@cache
def model_specs() -> dict[str, type[ModelSpec]]:
    """Each task's fleet-file spec by task name."""
    return {name: home.load("spec", home.spec) for name, home in _HOMES.items()}


def get_task(name: str) -> TaskKind:
    home = _home(name)
    return home.load("kind", home.kind)()  # type: ignore[no-any-return]


@cache
def get_codec(name: str) -> Codec:
    home = _home(name)
    return home.load("codec", home.codec)()  # type: ignore[no-any-return]
