"""A cascade served: per input, the small model's answer when it is sure, else the fallback's.

The request's inputs go through the small model's batcher as usual. Inputs whose calibrated confidence is below the
version's threshold (`Route`) are sent, together, to the fallback (a model of the fleet goes through its own batcher,
so the deferred inputs of many requests batch there too); the rest keep the small answer. Each answer says which
tier made it:

- `small`: the small model was sure;
- `fallback`: the fallback answered (`fallback_model`, `fallback_version` say which);
- `small-capped`: unsure, but the fallback's rate or spend cap was reached (the least confident inputs go first), or
  an LLM endpoint's own daily spend cap;
- `small-fallback-down`: unsure, but the fallback is not served, overloaded or failed (or an LLM answered no label
  of the set): the small model's answer, never an error for the whole request (the reason is logged when the
  fallback goes down and when it is back).

A small version without a calibration record (trained before cascades, or a search that kept no out-of-fold rows)
sends nothing on: every answer is `small`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shoal.cascade.calibration import CALIBRATION_FILE, Calibration, confidence, threshold
from shoal.cascade.fallback import Fallback, FallbackUnavailable
from shoal.cascade.spec import CascadeSpec

log = logging.getLogger("shoal.serve")


@dataclass(frozen=True)
class Route:
    """How one small version defers: inputs whose confidence at `temperature` is below `threshold` go on."""

    temperature: float
    threshold: float


def load_route(folder: Path, cascade: CascadeSpec) -> Route | None:
    """The route of the version in `folder` for the declared target, or None without a calibration record."""
    path = folder / CALIBRATION_FILE
    if not path.is_file():
        return None
    record = Calibration.from_json(json.loads(path.read_text(encoding="utf-8")))
    return Route(record.temperature, threshold(record, cascade))


class Caps:
    """The fallback's rate cap (a token bucket holding one second of inputs) and its spend cap per UTC day. Inputs are
    reserved when sent and given back when the fallback does not answer them."""

    def __init__(
        self,
        spec: CascadeSpec,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self.rate, self.budget = spec.max_fallback_per_second, spec.max_fallback_cost_per_day
        self.clock, self.today = clock, today
        self.tokens, self.at = self._bucket(), clock()
        self.day, self.spent = today(), 0.0

    def _bucket(self) -> float:
        """The most tokens the rate bucket holds: a second's worth, and at least one (a rate below 1/s still sends)."""
        return max(self.rate or 0.0, 1.0) if self.rate is not None else 0.0

    def reserve(self, wanted: int, cost_per_input: float) -> int:
        """How many of `wanted` inputs may go to the fallback now; they are counted against both caps."""
        allowed = wanted
        if self.rate is not None:
            now = self.clock()
            self.tokens = min(self._bucket(), self.tokens + (now - self.at) * self.rate)
            self.at = now
            allowed = min(allowed, int(self.tokens + 1e-9))
        if self.budget is not None and cost_per_input > 0:
            if self.today() != self.day:
                self.day, self.spent = self.today(), 0.0
            allowed = min(allowed, max(0, int((self.budget - self.spent) / cost_per_input + 1e-9)))
        self.release(-allowed, cost_per_input)
        return allowed

    def release(self, count: int, cost_per_input: float) -> None:
        """Give back `count` reserved inputs the fallback did not answer (negative: take them)."""
        if self.rate is not None:
            self.tokens += count
        self.spent -= count * cost_per_input


class CascadeMetrics(Protocol):
    """What the cascade records (`shoal.serve.metrics.Metrics`)."""

    def cascade_inputs(self, model: str, tier: str, count: int) -> None: ...
    def cascade_tier_seconds(self, model: str, tier: str, seconds: float) -> None: ...
    def cascade_cost(self, model: str, dollars: float) -> None: ...


class Cascade:
    """The served cascade of one model: its fallback, caps and metrics."""

    def __init__(self, model: str, spec: CascadeSpec, fallback: Fallback, metrics: CascadeMetrics, caps: Caps) -> None:
        self.model, self.spec, self.fallback, self.metrics, self.caps = model, spec, fallback, metrics, caps
        self.down: str | None = None  # why the fallback last failed, until it answers again
        self.resting_until = 0.0  # monotonic time before which the fallback is not asked (it just failed)

    async def answers(self, batcher: Any, loaded: Any, inputs: list[Any], codec: Any, parsed: Any) -> list[Any]:
        """The answers to `inputs`: the small model's batch (`batcher`, `loaded`) and, for its unsure inputs, the
        fallback's, shaped by the task's `codec` and marked with their tier."""
        started = time.perf_counter()
        proba = await batcher.predict(loaded, inputs)
        self.metrics.cascade_tier_seconds(self.model, "small", time.perf_counter() - started)
        tiers = np.full(len(inputs), "small", dtype=object)
        version = None
        route: Route | None = loaded.route
        if route is not None:
            conf = confidence(proba, route.temperature)
            unsure = np.flatnonzero(conf < route.threshold)
            if len(unsure):
                proba, version = await self._defer(inputs, proba, unsure[np.argsort(conf[unsure])], tiers, loaded)
        answers = codec.answers(proba, loaded.predictor, parsed)
        for answer, tier in zip(answers, tiers.tolist(), strict=True):
            answer["tier"] = tier
            if tier == "fallback":
                answer["fallback_model"], answer["fallback_version"] = self.fallback.name, version
        for tier, count in Counter(tiers.tolist()).items():
            self.metrics.cascade_inputs(self.model, tier, count)
        return answers

    async def _defer(
        self, inputs: list[Any], proba: np.ndarray, unsure: np.ndarray, tiers: np.ndarray, loaded: Any
    ) -> tuple[np.ndarray, int | str | None]:
        """Send the `unsure` inputs (least confident first) the caps allow to the fallback; mark every tier."""
        if time.monotonic() < self.resting_until:  # it failed moments ago: do not make this request wait on it
            tiers[unsure] = "small-fallback-down"
            return proba, None
        cost = self.fallback.cost_per_input()
        allowed = self.caps.reserve(len(unsure), cost)
        tiers[unsure[allowed:]] = "small-capped"
        sent = np.sort(unsure[:allowed])
        if not len(sent):
            return proba, None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.spec.fallback_timeout_s):
                deferred = await self.fallback.predict([inputs[i] for i in sent], loaded.labels)
        except (FallbackUnavailable, TimeoutError) as error:
            self.caps.release(len(sent), cost)
            tiers[sent] = "small-fallback-down"
            why = str(error) or f"no answer within fallback_timeout_s={self.spec.fallback_timeout_s:g}"
            self.resting_until = time.monotonic() + self.spec.fallback_cooldown_s
            self._went_down(why)
            return proba, None
        if deferred.problem is not None:
            self._went_down(deferred.problem)
        elif self.down is not None:
            log.info("model %s: its fallback %s answers again", self.model, self.fallback.name)
            self.down = None
        answered = np.ones(len(sent), dtype=bool) if deferred.tiers is None else np.array(deferred.tiers) == "fallback"
        tiers[sent] = "fallback" if deferred.tiers is None else deferred.tiers
        self.caps.release(int((~answered).sum()), cost)
        self.metrics.cascade_tier_seconds(self.model, "fallback", time.perf_counter() - started)
        self.metrics.cascade_cost(self.model, int(answered.sum()) * deferred.cost_per_input)
        combined = proba.copy()
        combined[sent[answered]] = deferred.proba[answered]
        return combined, deferred.version

    def _went_down(self, problem: str) -> None:
        if self.down is None:
            log.warning("model %s: its fallback does not answer (%s); the small model answers", self.model, problem)
        self.down = problem
