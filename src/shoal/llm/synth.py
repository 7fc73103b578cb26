"""An LLM endpoint as a generator of new training examples for one label, seeded with real ones.

`ExamplesPrompt` asks for `{"examples": [...]}` (a JSON schema of up to `n` strings where the server takes one)
and parses the answer strictly: anything else is `LLMAnswerInvalid`, counted, never an example. The request is the
label and its seed texts (the user message), so it goes through `LLMClient.classify` like a classification: the
registry's response cache (a re-run with the same seeds asks nothing), the spend cap, retries and the concurrency
limit hold. `llm_examples` is the synchronous entry point. The generated texts are unchecked: the caller validates
them (`shoal.train.synth`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from shoal.llm.client import Answer, LLMClient
from shoal.llm.errors import LLMAnswerInvalid, SpendCapReached
from shoal.llm.prompt import constraint_fields
from shoal.llm.spec import LLMEndpoint
from shoal.registry import Registry
from shoal.registry.llm_store import LLMStore

INSTRUCTION = (
    "You write new training examples for a text classifier. The user gives a label and real example texts of it. "
    "Write {n} new texts that belong to that label: varied, in the same language, style and length as the "
    'examples, never copies of them. Answer as JSON: {{"examples": ["<text>", ...]}}. Answer nothing else.'
)


@dataclass(frozen=True)
class ExampleRequest:
    """Ask for `n` new texts of `label`, seeded with `seeds` (the request's number `batch` keeps requests with the
    same seeds apart in the cache)."""

    label: str
    seeds: tuple[str, ...]
    n: int
    batch: int = 0

    def text(self) -> str:
        listed = "\n".join(f"- {json.dumps(seed, ensure_ascii=False)}" for seed in self.seeds)
        return (
            f"Label: {self.label}\nExamples:\n{listed}\nWrite {self.n} new texts of this label (request {self.batch})."
        )


@dataclass(frozen=True)
class ExamplesPrompt:
    """The prompt of a request for up to `n` new texts of at most about `max_chars` characters each."""

    n: int
    max_chars: int

    @cached_property
    def system(self) -> str:
        return INSTRUCTION.format(n=self.n)

    @cached_property
    def hash(self) -> str:
        """What keys the cache with the request: the instruction (not `max_chars`, which only bounds the answer)."""
        return hashlib.sha256(json.dumps(["examples", self.system, self.n]).encode()).hexdigest()

    @property
    def max_tokens(self) -> int:
        return self.n * (self.max_chars // 2 + 8) + 32

    def messages(self, text: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": text}]

    def constraint(self, output: str) -> dict[str, Any]:
        """The request fields that hold the answer to `{"examples": [texts]}` as strongly as `output` allows."""
        examples = {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": self.n}
        return constraint_fields(output, "examples", {"examples": examples}, self.grammar)

    @cached_property
    def grammar(self) -> str:
        """GBNF of `{"examples": [1 to n JSON strings of at most max_chars characters]}`, for llama.cpp servers
        without json_schema (bounded like the schema, so a model cannot run on until max_tokens cuts the JSON)."""
        more = "".join(' ( ", " text' for _ in range(self.n - 1)) + " )?" * (self.n - 1)
        return (
            f'root ::= "{{\\"examples\\": [" text{more} "]}}"\n'
            f'text ::= "\\"" char{{0,{self.max_chars}}} "\\""\n'
            'char ::= [^"\\\\\\x00-\\x1f] | "\\\\" ["\\\\/bfnrt]\n'
        )

    def parse(self, content: Any) -> str:
        """The examples as a JSON list of strings (the cache keeps it as one string)."""
        if not isinstance(content, str):
            raise LLMAnswerInvalid("the answer has no text content")
        try:
            answer = json.loads(content.strip())
        except ValueError:
            raise LLMAnswerInvalid("the answer is not JSON") from None
        examples = answer.get("examples") if isinstance(answer, dict) else None
        if not isinstance(examples, list) or not examples or not all(isinstance(e, str) for e in examples):
            raise LLMAnswerInvalid('the answer is not {"examples": [texts]}')
        return json.dumps(examples[: self.n], ensure_ascii=False)


@dataclass
class Generated:
    """The texts generated per request (in order; empty where the request failed) and how the requests ended."""

    texts: list[list[str]]
    prompt_hash: str
    outcomes: Counter[str] = field(default_factory=Counter)
    dollars: float = 0.0
    problem: str | None = None


async def generate(
    client: LLMClient,
    requests: Sequence[ExampleRequest],
    prompt: ExamplesPrompt,
    *,
    progress: Callable[[int], None] | None = None,
) -> Generated:
    generated = Generated([[] for _ in requests], prompt.hash)
    step = max(1, client.spec.max_concurrency)
    for start in range(0, len(requests), step):
        chunk = requests[start : start + step]
        if generated.outcomes["capped"]:
            generated.outcomes["capped"] += len(chunk)
        else:
            results = await client.classify([request.text() for request in chunk], prompt)
            for i, result in enumerate(results, start):
                if isinstance(result, Answer):
                    generated.texts[i] = json.loads(result.label)
                    generated.outcomes["cached" if result.cached else "ok"] += 1
                    generated.dollars += result.dollars
                else:
                    generated.outcomes[result.outcome] += 1
                    if not isinstance(result, LLMAnswerInvalid | SpendCapReached):
                        generated.problem = generated.problem or str(result)
        if progress is not None:
            progress(min(start + step, len(requests)))
    return generated


def llm_examples(
    registry: Registry,
    name: str,
    endpoint: LLMEndpoint,
    requests: Sequence[ExampleRequest],
    *,
    max_chars: int,
    progress: Callable[[int], None] | None = None,
) -> Generated:
    """New texts for each request from the fleet's LLM endpoint `name` (its cache and spend in `registry`)."""
    prompt = ExamplesPrompt(max((request.n for request in requests), default=1), max_chars)

    async def run() -> Generated:
        client = LLMClient(name, endpoint, LLMStore(registry))
        try:
            return await generate(client, requests, prompt, progress=progress)
        finally:
            await client.aclose()

    return asyncio.run(run())
