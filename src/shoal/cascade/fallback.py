"""The one interface a cascade's fallback implements, and the fallback that is another model of the fleet.

A fallback answers a list of inputs with one probability row per input over the labels the small model asked for
(a predictor that only names a label answers a one-hot row), says which version answered and what one input costs.
It raises `FallbackUnavailable` for anything that keeps it from answering; the cascade then answers with the small
model and marks it. A fallback that answers input by input (an LLM endpoint, `shoal.llm.fallback`) may leave some
inputs unanswered instead: its `tiers` say which, and why (`problem`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class FallbackUnavailable(Exception):
    """The fallback cannot answer now (not served, overloaded, failed, incompatible labels)."""


@dataclass(frozen=True)
class Deferred:
    """A fallback's answers: probabilities over the asked labels, the version that made them, $ per answered input;
    with `tiers`, each input's tier when not all were answered (`fallback`, else `small-capped` or
    `small-fallback-down`, whose rows are not used) and `problem`, why the fallback did not answer."""

    proba: np.ndarray
    version: int | str
    cost_per_input: float
    tiers: list[str] | None = None
    problem: str | None = None


class Fallback(ABC):
    #: what the answers and metrics call it (a model's name, an endpoint's model)
    name: str

    @abstractmethod
    def cost_per_input(self) -> float:
        """What one answered input is expected to cost now ($), for the spend cap."""

    @abstractmethod
    async def predict(self, inputs: list[Any], labels: list[str]) -> Deferred:
        """Answers to `inputs` over `labels`; raises `FallbackUnavailable` when it cannot answer."""


class _Served(Protocol):
    """What the fallback needs of a served model (`shoal.serve.pool.Slot`)."""

    current: Any  # the loaded version (`shoal.serve.batcher.Loaded`), None while none is
    batcher: Any  # its batcher (`shoal.serve.batcher.Batcher`)


class FleetFallback(Fallback):
    """Another model of the fleet served by the same server: the inputs go through its batcher (so the deferred
    inputs of many requests batch together there) and its production version answers."""

    def __init__(self, name: str, served: Mapping[str, _Served]) -> None:
        self.name = name
        self.served = served

    def _loaded(self) -> tuple[_Served, Any]:
        slot = self.served.get(self.name)
        if slot is None or slot.current is None:
            raise FallbackUnavailable(f"model {self.name!r} serves no version")
        return slot, slot.current

    def cost_per_input(self) -> float:
        try:
            _, loaded = self._loaded()
        except FallbackUnavailable:
            return 0.0
        return float(loaded.version.metrics.profile.cost_per_million) / 1e6

    async def predict(self, inputs: list[Any], labels: list[str]) -> Deferred:
        slot, loaded = self._loaded()
        columns = {label: i for i, label in enumerate(labels)}
        theirs = loaded.predictor.labels
        unknown = [label for label in theirs if label not in columns]
        if unknown:
            raise FallbackUnavailable(f"model {self.name!r} answers labels the small model lacks: {unknown[:3]}")
        try:
            proba = await slot.batcher.predict(loaded, inputs)
        except Exception as error:  # overloaded, past its deadline, failed: the small model answers
            raise FallbackUnavailable(f"model {self.name!r} did not answer: {getattr(error, 'code', error)}") from None
        aligned = np.zeros((len(inputs), len(labels)))
        aligned[:, [columns[label] for label in theirs]] = proba
        return Deferred(aligned, loaded.number, float(loaded.version.metrics.profile.cost_per_million) / 1e6)
