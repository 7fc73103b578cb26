"""A pipeline served (SMS spam -> Banking77 intent on a mixed inbox) vs a client calling the two models one after the
other, and the pipeline's end-to-end accuracy with its CI and per-step figures.

    .venv/bin/python benchmarks/pipeline.py [--workspace WS] [--concurrency 1,64] [--duration 5] [--repeat 3]

The workspace (created and trained on first use: `spam` on the SMS Spam Collection, `intent` on the Banking77 train
split, both `tfidf-logreg`) has the pipeline `inbox`: `spam`, stopping at label spam, then `intent`. Its test file
is held out from both models: the last 20% of the SMS rows (judged on spam) and the Banking77 test split (judged on
spam = ham and on the intent). One `shoal serve` process (`--workers 1`). The same asyncio client (httpx, one
connection per concurrent caller) sends one inbox text per request, cycling through the test texts, either to
`POST /v1/pipelines/inbox/predict` or to spam's predict and then, unless spam, to intent's predict. Texts/s count
texts fully answered (no failed request is counted; failures are printed); p50 is per text. Each figure is the
median of `--repeat` interleaved rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import yaml
from harness import DATA, ROOT, free_port, server
from machine import load_average, print_command, print_machine

from shoal.data.ingest import ingest_file
from shoal.pipelines.evaluate import evaluate_pipeline
from shoal.registry import PRODUCTION
from shoal.train.trainer import train_models
from shoal.workspace import Workspace

PIPELINE = "/v1/pipelines/inbox/predict"
FLEET = {
    "workspace": {"n_jobs": 2, "evaluation": {"latency_calls": 100, "bootstrap": 1000, "measure_rss": False}},
    "models": {
        "spam": {"task": "text-classification", "metric": "f1:spam", "families": ["tfidf-logreg"]},
        "intent": {"task": "text-classification", "metric": "accuracy", "families": ["tfidf-logreg"]},
    },
    "pipelines": {
        "inbox": {
            "test": "inbox_test.csv",
            "steps": [{"model": "spam", "stop": {"label": ["spam"]}}, {"model": "intent"}],
        }
    },
}


def prepare(root: Path, data: Path) -> Workspace:
    """The workspace with both models trained and the pipeline's test file (built once)."""
    if (root / "shoal.yaml").exists():
        ws = Workspace(root)
        if all(ws.registry.alias(model, PRODUCTION) is not None for model in ("spam", "intent")):
            return ws
    root.mkdir(parents=True, exist_ok=True)
    (root / "shoal.yaml").write_text(yaml.safe_dump(FLEET, sort_keys=False), encoding="utf-8")
    sms = pd.read_csv(data / "sms_spam" / "sms_spam.csv", keep_default_na=False)
    cut = int(len(sms) * 0.8)
    sms.iloc[:cut].to_csv(root / "spam.csv", index=False)
    banking_test = pd.read_csv(data / "banking77" / "test.csv", keep_default_na=False)
    held_out = sms.iloc[cut:]
    pd.concat(
        [
            pd.DataFrame({"text": held_out["text"], "spam": held_out["label"], "intent": ""}),
            pd.DataFrame({"text": banking_test["text"], "spam": "ham", "intent": banking_test["label"]}),
        ]
    ).to_csv(root / "inbox_test.csv", index=False)
    ws = Workspace(root)
    ingest_file(ws, "spam", root / "spam.csv")
    ingest_file(ws, "intent", data / "banking77" / "train.csv", split="train")
    ingest_file(ws, "intent", data / "banking77" / "test.csv", split="test")
    for report in train_models(ws, ["spam", "intent"]):
        if report.error:
            raise SystemExit(f"training {report.model} failed: {report.error}")
    return ws


async def _caller(url: str, mode: str, texts: list[str], start: int, until: float, out: dict[str, list]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        i = start
        while time.perf_counter() < until:
            text = texts[i % len(texts)]
            i += 1
            began = time.perf_counter()
            try:
                if mode == "pipeline":
                    response = await http.post(PIPELINE, json={"inputs": [text]})
                    ok = response.status_code == 200
                else:
                    response = await http.post("/v1/models/spam/predict", json={"inputs": [text]})
                    ok = response.status_code == 200
                    if ok and response.json()["predictions"][0]["label"] != "spam":
                        response = await http.post("/v1/models/intent/predict", json={"inputs": [text]})
                        ok = response.status_code == 200
            except httpx.HTTPError as error:
                out["failed"].append(f"{type(error).__name__}")
                continue
            if ok:
                out["latency"].append(time.perf_counter() - began)
            else:
                out["failed"].append(str(response.status_code))


def measure(url: str, mode: str, texts: list[str], concurrency: int, seconds: float) -> dict[str, float]:
    out: dict[str, list] = {"latency": [], "failed": []}
    until = time.perf_counter() + seconds

    async def run() -> None:
        step = len(texts) // concurrency or 1
        await asyncio.gather(*(_caller(url, mode, texts, k * step, until, out) for k in range(concurrency)))

    asyncio.run(run())
    done = out["latency"]
    return {
        "texts_per_s": len(done) / seconds,
        "p50_ms": statistics.median(done) * 1000 if done else float("nan"),
        "failed": len(out["failed"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=ROOT / "benchmarks" / ".work" / "pipeline")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    begun = print_machine()
    ws = prepare(args.workspace, args.data)
    report = evaluate_pipeline(ws, "inbox")
    end = report["end_to_end"]
    print(f"\ninbox pipeline on {report['n']} held-out texts ({report['versions']}):")
    print(f"  end to end: accuracy {end['accuracy']:.4f} (95% CI {end['ci'][0]:.4f}..{end['ci'][1]:.4f}, n={end['n']})")
    for step, part in report["steps"].items():
        print(
            f"  step {step}: accuracy {part['accuracy']:.4f} (95% CI {part['ci'][0]:.4f}..{part['ci'][1]:.4f}, "
            f"n={part['n']}, skipped {part['skipped']})"
        )
    texts = pd.read_csv(args.workspace / "inbox_test.csv", keep_default_na=False)["text"].tolist()
    levels = [int(c) for c in args.concurrency.split(",")]
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    port = free_port()
    command = [sys.executable, "-m", "shoal", "serve", "-w", str(args.workspace), "--port", str(port), "--workers", "1"]
    with server(command, port, path=PIPELINE) as (url, _pid):
        for _ in range(args.repeat):
            for concurrency in levels:
                for mode in ("pipeline", "two calls"):
                    measure(url, mode, texts, concurrency, 1.0)  # warm-up
                    runs.setdefault((mode, concurrency), []).append(
                        measure(url, mode, texts, concurrency, args.duration)
                    )
            print(f"  round done ({load_average()})", flush=True)
    print("\n| client | concurrency | texts/s | p50 ms per text | failed |\n|---|---:|---:|---:|---:|")
    for (mode, concurrency), found in runs.items():
        rate = statistics.median(r["texts_per_s"] for r in found)
        p50 = statistics.median(r["p50_ms"] for r in found)
        failed = sum(r["failed"] for r in found)
        print(f"| {mode} | {concurrency} | {rate:,.0f} | {p50:.2f} | {failed} |")
    print_command(begun)


if __name__ == "__main__":
    main()
