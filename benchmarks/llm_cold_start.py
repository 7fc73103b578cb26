"""A cold start end to end with a real local LLM: llama.cpp's server (xllamacpp) with SmolLM2-135M (issue 15, part 4).

    PYTHONPATH=src .venv/bin/python benchmarks/llm_cold_start.py [--served 120] [--after 200] [--gold 300]

A model `spam` (SMS ham/spam) with no labelled data declares the LLM as its `llm:` (the endpoint's declared price:
$0.15 / $0.60 per million tokens in / out) and starts cold; a human-labelled test set of `--gold` SMS rows is
ingested (the gate's gold test set). `shoal serve` (a real process) answers through its batcher with the LLM:

1. `--served` new texts one request at a time (uncached): p50 / p95 latency through shoal;
2. `--served` other new texts from 4 clients at once: requests/s through shoal (uncached);
3. the first texts again, one at a time: the cache-hit path's p50 / p95;
4. a person labels every `--feedback-every`-th served text (default: half); `shoal worker --once` (in this
   process, the job in its child) turns the feedback and the LLM's other answers into data, trains tfidf-logreg and
   gates it against the LLM on the gold test set (non_inferiority_margin 0.1);
5. once the server serves the promoted small version (the LLM now its cascade fallback, max_deferral 0.2), `--after`
   new texts one request at a time.

Reports the LLM calls per 1,000 requests before and after the demotion (from the server's
`shoal_llm_requests_total`, uncached calls only), the gate's decision and the LLM tier's cost from `/v1/models`.
SmolLM2 is too weak to classify: behaviour is measured, not quality. Prints the machine and load first, the
command last.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import yaml
from harness import free_port, server
from machine import print_command, print_machine

from shoal import coldstart
from shoal.data.ingest import ingest_file
from shoal.registry import PRODUCTION
from shoal.worker.runner import Worker
from shoal.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
ROUTE = "/v1/models/spam/predict"
CALLS = re.compile(r'^shoal_llm_requests_total\{endpoint="local",outcome="(ok|invalid|error|capped)"\} (\S+)$', re.M)


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def llm_calls(url: str) -> float:
    """The LLM calls the server made (cached answers are not calls)."""
    return sum(float(count) for _, count in CALLS.findall(httpx.get(f"{url}/metrics", timeout=30).text))


def ask(client: httpx.Client, url: str, text: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = client.post(url + ROUTE, json={"inputs": [text]}, timeout=300)
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{response.status_code}: {response.text}")
    return seconds, response.json()


def one_at_a_time(url: str, texts: list[str]) -> tuple[list[float], list[dict[str, Any]]]:
    with httpx.Client() as client:
        done = [ask(client, url, text) for text in texts]
    return [s for s, _ in done], [body for _, body in done]


def together(url: str, texts: list[str], clients: int) -> float:
    """Requests per second with `clients` clients at once."""

    def run(part: list[str]) -> None:
        with httpx.Client() as client:
            for text in part:
                ask(client, url, text)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, [texts[i::clients] for i in range(clients)]))
    return len(texts) / (time.perf_counter() - started)


def workspace(folder: Path, api: str, gold: pd.DataFrame) -> Workspace:
    fleet = {
        "workspace": {"n_jobs": 1, "evaluation": {"measure_rss": False}, "server": {"poll_interval_s": 0.5}},
        "llm": {"local": {"base_url": api, "model": "smollm2", "price_in": 0.15, "price_out": 0.6, "timeout_s": 120}},
        "models": {
            "spam": {
                "task": "text-classification",
                "labels": ["ham", "spam"],
                "metric": "accuracy",
                "families": ["tfidf-logreg"],
                "llm": {"endpoint": "local", "min_rows": 50, "timeout_s": 300},
                "gate": {"non_inferiority_margin": 0.1},
                "retrain": {"min_new_rows": 1, "debounce_seconds": 0},
            }
        },
    }
    (folder / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    ws = Workspace(folder)
    gold.to_csv(folder / "gold.csv", index=False)
    ingest_file(ws, "spam", folder / "gold.csv", split="test")
    coldstart.start(ws, "spam")
    return ws


def ready(url: str, deadline: float) -> None:
    """Until /readyz answers 200: the LLM version is loaded (`harness.wait_ready` would call the LLM to check)."""
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("shoal serve was not ready in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--served", type=int, default=120, help="texts per phase before the demotion")
    parser.add_argument("--after", type=int, default=200, help="texts after the demotion")
    parser.add_argument("--gold", type=int, default=300, help="human-labelled test rows")
    parser.add_argument("--feedback-every", type=int, default=2, help="a person labels every n-th served text")
    args = parser.parse_args()
    frame = pd.read_csv(ROOT.parent / "shared" / "data" / "sms_spam" / "sms_spam.csv", keep_default_na=False)
    frame = frame.drop_duplicates("text").reset_index(drop=True)
    n = args.served
    first, second = frame.iloc[:n], frame.iloc[n : 2 * n]
    gold = frame.iloc[2 * n : 2 * n + args.gold]
    unseen = frame.iloc[2 * n + args.gold : 2 * n + args.gold + args.after]
    sys.path.insert(0, str(ROOT / "tests"))
    from local_llm import local_llm  # the tests' fixture: the server in a child process

    started = print_machine()
    with tempfile.TemporaryDirectory() as folder, local_llm(Path(folder)) as api:
        root = Path(folder) / "ws"
        root.mkdir()
        ws = workspace(root, api, gold)
        port = free_port()
        command = [sys.executable, "-m", "shoal", "serve", "--port", str(port), "-w", str(root)]
        with server(command, port, path="") as (url, _):
            ready(url, time.monotonic() + 300)
            report(url, root, first, second, unseen, args.feedback_every)
        ws.close()
    print_command(started)


def report(
    url: str, root: Path, first: pd.DataFrame, second: pd.DataFrame, unseen: pd.DataFrame, feedback_every: int
) -> None:
    calls = llm_calls(url)
    uncached, answers = one_at_a_time(url, first["text"].tolist())
    assert {a["predictions"][0]["tier"] for a in answers} == {"llm"}
    rps = together(url, second["text"].tolist(), clients=4)
    calls_before = llm_calls(url) - calls
    requests_before = len(first) + len(second)
    cached, _ = one_at_a_time(url, first["text"].tolist())
    assert llm_calls(url) - calls == calls_before, "the cached path called the LLM"
    labels = [a["predictions"][0]["label"] for a in answers]
    agreement = sum(label == truth for label, truth in zip(labels, first["label"], strict=True)) / len(first)
    for body, truth in list(zip(answers, first["label"], strict=True))[::feedback_every]:
        sent = {"request_id": body["request_id"], "index": 0, "label": truth}
        httpx.post(f"{url}/v1/models/spam/feedback", json=sent, timeout=30).raise_for_status()
    trained = time.perf_counter()
    jobs = Worker(Workspace(root), worker_id="bench").run(once=True)
    trained = time.perf_counter() - trained
    registry = Workspace(root).registry
    production = registry.alias("spam", PRODUCTION)
    history = registry.alias_history("spam")
    decision = registry.events("spam", kind=("promoted", "rejected"), limit=1, latest=True)
    print(f"\ngate: {decision[-1].message if decision else 'no decision (see the worker log)'}")
    if production is None or registry.version("spam", production).family == "llm":
        print("no small version promoted: the LLM still answers; nothing measured after a demotion")
        return
    deadline = time.monotonic() + 120
    while True:
        model = httpx.get(f"{url}/v1/models", timeout=30).json()["models"][0]
        if model["serving_version"] == production and (model["llm"] or {}).get("role") == "fallback":
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the small version was not served with the LLM as its fallback: {model}")
        time.sleep(0.2)
    calls = llm_calls(url)
    small, after = one_at_a_time(url, unseen["text"].tolist())
    calls_after = llm_calls(url) - calls
    tiers = [a["predictions"][0]["tier"] for a in after]
    print(
        "\nSMS ham/spam; SmolLM2-135M-Instruct Q4_1 on llama.cpp's server (2 slots, 1 thread each) behind shoal serve"
    )
    print(f"SmolLM2's answers agree with the human labels on {agreement:.0%} of the first {len(first)} texts\n")
    print("| path (one text per request) | p50 | p95 | requests/s |\n|---|---:|---:|---:|")
    print(
        f"| LLM tier, uncached, 1 client | {percentile(uncached, 50) * 1e3:.0f} ms | "
        f"{percentile(uncached, 95) * 1e3:.0f} ms | {len(uncached) / sum(uncached):.1f} |"
    )
    print(f"| LLM tier, uncached, 4 clients | | | {rps:.1f} |")
    print(
        f"| LLM tier, cache hit, 1 client | {percentile(cached, 50) * 1e3:.2f} ms | "
        f"{percentile(cached, 95) * 1e3:.2f} ms | {len(cached) / sum(cached):.0f} |"
    )
    print(
        f"| after the demotion (small + LLM fallback), 1 client | {percentile(small, 50) * 1e3:.1f} ms | "
        f"{percentile(small, 95) * 1e3:.0f} ms | {len(small) / sum(small):.1f} |"
    )
    print("\n| | requests | LLM calls | LLM calls per 1,000 requests |\n|---|---:|---:|---:|")
    for phase, requests, made in (
        ("before (the LLM answers)", requests_before, calls_before),
        ("after (the LLM is the fallback)", len(unseen), calls_after),
    ):
        print(f"| {phase} | {requests} | {made:.0f} | {1000 * made / requests:.0f} |")
    print(f"\ntiers after: {pd.Series(tiers).value_counts().to_dict()}")
    print(f"worker: {jobs} job(s) in {trained:.1f} s (feedback + LLM answers -> data -> tfidf-logreg -> gate)")
    for change in history:
        print(f"history: {change.actor} -> v{change.to_version}: {change.reason}")
    tier = httpx.get(f"{url}/v1/models/spam", timeout=30).json()["llm"]
    print(
        f"cost: LLM ${tier['cost_per_million']:.2f} per 1M calls ({tier['tokens_in_per_call']:.0f} / "
        f"{tier['tokens_out_per_call']:.1f} tokens in / out measured on {tier['calls']} answers); small tier "
        f"${tier['small_cost_per_million']:.4f} per 1M; the model with {tier['deferred']:.0%} deferred: "
        f"${tier['cost_per_million_predictions']:.2f} per 1M predictions"
    )


if __name__ == "__main__":
    main()
