"""A model's LLM version: at cold start (the model's `llm:` key) the endpoint answers every input of the model.

The version is a registry version of family `llm` whose artifact holds only `llm.json` (`LLMRecord`: the endpoint,
its model, the instruction and the labels); nothing is fitted. The server answers with it through the model's
batcher like any version, but its batches run on the event loop (`LLMAnswerer.apredict`), not on the inference
pool's threads: they wait on the network, not the CPU. A request waits for its answers at most `timeout_s`; after
a timeout or an unreachable endpoint the answerer rests `cooldown_s` (requests are refused at once meanwhile) so an
outage never holds requests. `cost` is the endpoint's $ per million calls from the tokens its answers measured.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shoal.llm.client import Answer, LLMClient
from shoal.llm.errors import LLMError, LLMUnavailable
from shoal.llm.prompt import DEFAULT_PROMPT, Prompt
from shoal.llm.spec import LLMEndpoint
from shoal.registry.llm_store import LLMStore

#: the family of an LLM version in the registry
LLM_FAMILY = "llm"
RECORD_FILE = "llm.json"


@dataclass(frozen=True)
class LLMRecord:
    """What an LLM version is: which endpoint and model answer, with which instruction, over which labels."""

    endpoint: str
    model: str
    instruction: str
    labels: tuple[str, ...]

    @classmethod
    def of(cls, endpoint: str, spec: LLMEndpoint, prompt: str | None, labels: list[str]) -> LLMRecord:
        """The record of `endpoint` answering over `labels` (sorted, as a small version's labels are: the cascade
        that follows asks the same prompt, so the LLM's cached answers serve it too)."""
        return cls(endpoint, spec.model, prompt or spec.prompt or DEFAULT_PROMPT, tuple(sorted(labels)))

    @property
    def prompt(self) -> Prompt:
        return Prompt(self.instruction, self.labels)

    def save(self, folder: Path) -> None:
        data = {"endpoint": self.endpoint, "model": self.model, "instruction": self.instruction, "labels": self.labels}
        (folder / RECORD_FILE).write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> LLMRecord:
        data = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
        return cls(data["endpoint"], data["model"], data["instruction"], tuple(data["labels"]))


class LLMAnswerer:
    """A served LLM version: `apredict` answers a batch on the event loop (one-hot rows: an LLM's label has no
    calibrated probability), each input's failure its own."""

    def __init__(self, record: LLMRecord, client: LLMClient, timeout_s: float, cooldown_s: float) -> None:
        self.record, self.client = record, client
        self.labels = list(record.labels)
        self.prompt = record.prompt
        self.timeout_s, self.cooldown_s = timeout_s, cooldown_s
        self.resting_until = 0.0  # monotonic time before which the endpoint is not asked (it just failed)
        self.down: str | None = None  # why it last failed

    @property
    def concurrency(self) -> int:
        """Batches that may wait on the endpoint at once: its client limits the requests in flight itself."""
        return self.client.spec.max_concurrency

    def check_inputs(self, inputs: list[Any]) -> list[str]:
        return []

    async def apredict(self, texts: list[str]) -> tuple[np.ndarray, list[LLMError | None]]:
        """(one-hot rows over `labels`, each input's error or None); raises `LLMUnavailable` when the endpoint did
        not answer within `timeout_s` or is resting after a failure."""
        if time.monotonic() < self.resting_until:
            raise LLMUnavailable(
                f"endpoint {self.client.name} failed moments ago ({self.down}); not asked for {self.cooldown_s:g} s"
            )
        answered_before = self._answered()
        try:
            async with asyncio.timeout(self.timeout_s):
                results = await self.client.classify(texts, self.prompt)
        except TimeoutError:
            why = f"endpoint {self.client.name}: no answer within {self.timeout_s:g} s"
            answered = self._answered() - answered_before
            if answered:  # busy, not down: what it answered is cached for the retry, and nobody is made to rest
                raise LLMUnavailable(f"{why} for all {len(texts)} texts of the batch ({answered} answered)") from None
            raise self._rest(why) from None
        columns = {label: i for i, label in enumerate(self.labels)}
        proba = np.zeros((len(texts), len(self.labels)))
        errors: list[LLMError | None] = []
        for row, result in enumerate(results):
            if isinstance(result, Answer):
                proba[row, columns[result.label]] = 1.0
                errors.append(None)
            else:
                errors.append(result)
        unavailable = next((e for e in errors if type(e) is LLMUnavailable), None)
        if unavailable is not None:
            self._rest(str(unavailable))
        elif not any(errors):
            self.down = None
        return proba, errors

    def _answered(self) -> int:
        """The requests this process's client got an answer to (a label or not), so far."""
        return self.client.outcomes["ok"] + self.client.outcomes["invalid"]

    def _rest(self, why: str) -> LLMUnavailable:
        self.down, self.resting_until = why, time.monotonic() + self.cooldown_s
        return LLMUnavailable(why)


def classify_now(client: LLMClient, prompt: Prompt, texts: list[str]) -> list[str]:
    """The labels of `texts` (cached answers first), asked outside any event loop (the gate, `shoal eval`); raises
    the first input's `LLMError` when the endpoint left one unanswered: a champion is never judged on guesses."""

    async def ask() -> list[Answer | LLMError]:
        try:
            return await client.classify(texts, prompt)
        finally:
            await client.aclose()

    results = asyncio.run(ask())
    failed = next((r for r in results if isinstance(r, LLMError)), None)
    if failed is not None:
        raise type(failed)(f"{failed} ({sum(isinstance(r, LLMError) for r in results)} of {len(texts)} inputs)")
    return [r.label for r in results if isinstance(r, Answer)]


@dataclass(frozen=True)
class LLMCost:
    """The LLM tier's cost: $ per million calls from the tokens its answers measured (`calls` of them) and the
    endpoint's declared prices; None before any answer was measured."""

    endpoint: str
    model: str
    price_in: float
    price_out: float
    calls: int
    tokens_in_per_call: float | None
    tokens_out_per_call: float | None
    cost_per_million: float | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def cost(store: LLMStore, endpoint: str, spec: LLMEndpoint, prompt: Prompt | None = None) -> LLMCost:
    """`endpoint`'s cost per million calls, from its cached answers' measured tokens (of `prompt` only, if given)."""
    used = store.usage(endpoint, spec.model, prompt.hash if prompt is not None else None)
    if not used.requests:
        return LLMCost(endpoint, spec.model, spec.price_in, spec.price_out, 0, None, None, None)
    tokens_in, tokens_out = used.tokens_in / used.requests, used.tokens_out / used.requests
    per_call = (tokens_in * spec.price_in + tokens_out * spec.price_out) / 1e6
    return LLMCost(
        endpoint, spec.model, spec.price_in, spec.price_out, used.requests, tokens_in, tokens_out, per_call * 1e6
    )
