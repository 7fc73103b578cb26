"""The LLM client against a real local server: llama.cpp's server (xllamacpp) with SmolLM2-135M (issue 15, part 1).

    PYTHONPATH=src .venv/bin/python benchmarks/llm.py [--texts 60]

Starts the server as the tests do (tests/local_llm.py: 2 slots, 2 threads), then classifies `--texts` SMS texts
(ham/spam, the answer constrained by a JSON-schema enum) with `shoal.llm.client.LLMClient` and a SQLite registry:

- uncached, one text at a time (max_concurrency 1): p50 / p95 seconds per text;
- uncached, all texts at once under max_concurrency 2 (another prompt, so nothing is cached): texts/s;
- the same texts again, from the registry's cache: p50 per text, and one call of all texts.

Prints the machine and load first and the command last. Quality is not measured: SmolLM2 is too weak to classify.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from machine import print_command, print_machine

from shoal.llm.client import Answer, LLMClient
from shoal.llm.prompt import DEFAULT_PROMPT, Prompt
from shoal.llm.spec import LLMEndpoint
from shoal.registry import Registry
from shoal.registry.llm_store import LLMStore

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("ham", "spam")


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def one_by_one(client: LLMClient, texts: list[str], prompt: Prompt) -> list[float]:
    seconds = []
    for text in texts:
        started = time.perf_counter()
        [answer] = await client.classify([text], prompt)
        assert isinstance(answer, Answer), answer
        seconds.append(time.perf_counter() - started)
    return seconds


async def measure(api: str, registry: Registry, texts: list[str]) -> None:
    store = LLMStore(registry)
    single = LLMClient("local", LLMEndpoint(base_url=api, model="smollm2", max_concurrency=1), store)
    pair = LLMClient("local", LLMEndpoint(base_url=api, model="smollm2", max_concurrency=2), store)
    prompt, other = Prompt(DEFAULT_PROMPT, LABELS), Prompt("Is this SMS spam? {labels}", LABELS)
    try:
        uncached = await one_by_one(single, texts, prompt)
        started = time.perf_counter()
        answers = await pair.classify(texts, other)
        together = time.perf_counter() - started
        assert all(isinstance(a, Answer) for a in answers), answers
        cached = await one_by_one(single, texts, prompt)
        started = time.perf_counter()
        await single.classify(texts, prompt)
        batch = time.perf_counter() - started
    finally:
        await single.aclose()
        await pair.aclose()
    print(f"\n{len(texts)} SMS texts, labels ham/spam, SmolLM2-135M-Instruct Q4_1 on llama.cpp's server (2 slots)\n")
    print("| path | p50 | p95 | texts/s |\n|---|---:|---:|---:|")
    print(
        f"| uncached, one at a time | {percentile(uncached, 50) * 1e3:.0f} ms | {percentile(uncached, 95) * 1e3:.0f} ms"
        f" | {len(texts) / sum(uncached):.1f} |"
    )
    print(f"| uncached, max_concurrency 2 | | | {len(texts) / together:.1f} |")
    print(
        f"| cached, one at a time | {percentile(cached, 50) * 1e3:.2f} ms | {percentile(cached, 95) * 1e3:.2f} ms"
        f" | {len(texts) / sum(cached):.0f} |"
    )
    print(f"| cached, all in one call | | | {len(texts) / batch:.0f} |")
    print(f"\ntokens: {single.tokens_in + pair.tokens_in} prompt, {single.tokens_out + pair.tokens_out} completion")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=60)
    args = parser.parse_args()
    frame = pd.read_csv(ROOT.parent / "shared" / "data" / "sms_spam" / "sms_spam.csv", keep_default_na=False)
    texts = list(dict.fromkeys(frame["text"]))[: args.texts]
    sys.path.insert(0, str(ROOT / "tests"))
    from local_llm import local_llm  # the tests' fixture: the server in a child process

    started = print_machine()
    with tempfile.TemporaryDirectory() as folder, local_llm(Path(folder)) as api:
        registry = Registry(f"sqlite:///{folder}/registry.db", Path(folder) / "artifacts")
        try:
            asyncio.run(measure(api, registry, texts))
        finally:
            registry.close()
    print_command(started)


if __name__ == "__main__":
    main()
