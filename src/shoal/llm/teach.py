"""An LLM endpoint as a teacher: each text labelled with one of a label set, or counted as why it was not.

`llm_labels(registry, name, endpoint, texts, labels)` is the public entry point (synchronous; `teach` is its async
core, for a caller with an event loop of its own). Every text goes through the endpoint's `LLMClient`, so the
registry's response cache (a re-run asks nothing it has asked before), the daily spend cap, retries and the
concurrency limit all hold. An answer outside the label set is `invalid`: counted, never a label. Once the cap is
reached the texts not asked yet are counted `capped` without a request.

The texts go in chunks of `CHUNK` (one cache look-up each); `progress(done)` is called after each chunk.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from shoal.llm.client import Answer, LLMClient
from shoal.llm.errors import LLMAnswerInvalid, SpendCapReached
from shoal.llm.prompt import DEFAULT_PROMPT, Prompt
from shoal.llm.spec import LLMEndpoint
from shoal.registry import Registry
from shoal.registry.llm_store import LLMStore

CHUNK = 256


@dataclass
class Taught:
    """What the teacher answered: each text's label (None where it gave none) and why the others have none."""

    labels: list[str | None]
    prompt_hash: str
    outcomes: Counter[str] = field(default_factory=Counter)  # ok, cached, invalid, error, capped
    dollars: float = 0.0
    problem: str | None = None  # the first error that was not an invalid answer or the cap (the endpoint's)

    @property
    def labelled(self) -> int:
        return sum(label is not None for label in self.labels)

    @property
    def capped(self) -> bool:
        return self.outcomes["capped"] > 0


def teacher_prompt(
    labels: Sequence[str], instruction: str | None = None, endpoint: LLMEndpoint | None = None
) -> Prompt:
    """The classification prompt a teacher labels with: the given instruction, else the endpoint's, else the
    default."""
    chosen = instruction or (endpoint.prompt if endpoint is not None else None) or DEFAULT_PROMPT
    return Prompt(chosen, tuple(labels))


async def teach(
    client: LLMClient,
    texts: Sequence[str],
    prompt: Prompt,
    *,
    progress: Callable[[int], None] | None = None,
) -> Taught:
    """Label `texts` with `client` (see the module); never raises for one text's failure."""
    taught = Taught([None] * len(texts), prompt.hash)
    done = 0
    for start in range(0, len(texts), CHUNK):
        chunk = list(texts[start : start + CHUNK])
        if taught.capped:  # the day's cap is spent: the rest is not sent
            taught.outcomes["capped"] += len(chunk)
        else:
            for i, result in enumerate(await client.classify(chunk, prompt), start):
                if isinstance(result, Answer):
                    taught.labels[i] = result.label
                    taught.outcomes["cached" if result.cached else "ok"] += 1
                    taught.dollars += result.dollars
                else:
                    taught.outcomes[result.outcome] += 1
                    if not isinstance(result, LLMAnswerInvalid | SpendCapReached):
                        taught.problem = taught.problem or str(result)
        done += len(chunk)
        if progress is not None:
            progress(done)
    return taught


def llm_labels(
    registry: Registry,
    name: str,
    endpoint: LLMEndpoint,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    instruction: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Taught:
    """Label `texts` with one of `labels` through the fleet's LLM endpoint `name` (its cache and spend in
    `registry`); in its own event loop, so not from inside a running one (use `teach` there)."""
    prompt = teacher_prompt(labels, instruction, endpoint)

    async def run() -> Taught:
        client = LLMClient(name, endpoint, LLMStore(registry))
        try:
            return await teach(client, texts, prompt, progress=progress)
        finally:
            await client.aclose()

    return asyncio.run(run())
