"""Very long inputs beside normal traffic (issue 12, defect 4): what two clients sending ~960 KB single texts do to
eight clients sending ordinary SMS texts to the same model.

    PYTHONPATH=src .venv/bin/python benchmarks/long_inputs.py [--duration 15] [--long-chars 960000]
                                                              [--max-input-chars N]

Trains `spam` (majority + tfidf-logreg on the 5,574 SMS texts) into benchmarks/.work/long_inputs once, starts
`shoal serve` on 127.0.0.1 in a process of its own, then runs two phases of `--duration` seconds: the normal clients
alone, then the normal clients with the long clients (those in a process of their own, so that they do not share
the normal clients' interpreter lock). Every client is a thread with its own connection that sends one request
after another; every error is counted (any status but 200, a connection error, a timeout). It prints
the normal clients' requests/s and errors in each phase, and what the long clients got. `--max-input-chars` writes
`serve.max_input_chars` into the fleet file (leave it out to keep the default, or to run code that predates it).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd
import yaml
from harness import free_port, server
from machine import print_command, print_machine

from shoal.data.ingest import ingest_file
from shoal.registry import PRODUCTION
from shoal.train.trainer import train_models
from shoal.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
MODEL = "spam"
ROUTE = f"/v1/models/{MODEL}/predict"


def prepare(folder: Path, data: Path, max_input_chars: int | None) -> None:
    """A workspace with `spam` in production (trained once); the fleet file's limit set to `max_input_chars`."""
    fleet_file = folder / "shoal.yaml"
    if not fleet_file.exists():
        folder.mkdir(parents=True, exist_ok=True)
        model = {"task": "text-classification", "metric": "f1:spam", "families": ["majority", "tfidf-logreg"]}
        fleet = {"workspace": {"evaluation": {"latency_calls": 50, "measure_rss": False}}, "models": {MODEL: model}}
        fleet_file.write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    fleet = yaml.safe_load(fleet_file.read_text(encoding="utf-8"))
    serve = fleet["models"][MODEL].setdefault("serve", {})
    serve.pop("max_input_chars", None)
    if max_input_chars is not None:
        serve["max_input_chars"] = max_input_chars
    fleet_file.write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    ws = Workspace(folder)
    try:
        if ws.registry.alias(MODEL, PRODUCTION) is None:
            print(f"training {MODEL} into {folder} (once)", flush=True)
            ingest_file(ws, MODEL, data / "sms_spam" / "sms_spam.csv")
            [report] = train_models(ws, [MODEL])
            if report.error is not None:
                sys.exit(f"training failed: {report.error}")
    finally:
        ws.close()


@dataclass
class Tally:
    """What one group of clients got during one phase."""

    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str) -> None:
        with self.lock:
            if outcome == "200":
                self.ok += 1
            else:
                self.errors[outcome] += 1


def client(url: str, bodies: list[bytes], tally: Tally, stop: Any, timeout_s: float) -> None:
    """Send the bodies in turn until `stop`; tally every answer (status) and every failure (exception name)."""
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=url, timeout=timeout_s) as http:
        sent = 0
        while not stop.is_set():
            try:
                response = http.post(ROUTE, content=bodies[sent % len(bodies)], headers=headers)
                outcome = str(response.status_code)
            except httpx.HTTPError as error:
                outcome = type(error).__name__
            sent += 1
            tally.add(outcome)


def run_clients(url: str, count: int, bodies: list[bytes], tally: Tally, stop: Any) -> None:
    """`count` client threads until `stop`; every thread is joined with a timeout."""
    timeout_s = 30.0
    threads = [
        threading.Thread(target=client, args=(url, bodies, tally, stop, timeout_s), daemon=True) for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(timeout_s + 5)
    if any(thread.is_alive() for thread in threads):
        tally.errors["client did not finish"] += 1


def long_process(url: str, count: int, bodies: list[bytes], started: Any, stop: Any, out: Any) -> None:
    """The long clients, in a process of their own (so they do not take the normal clients' interpreter lock);
    `started` is set at their first answer, `stop` ends them, their tally goes to `out`."""
    tally = Tally()
    threading.Thread(target=_signal_first, args=(tally, started, stop), daemon=True).start()
    run_clients(url, count, bodies, tally, stop)
    out.put((tally.ok, dict(tally.errors)))


def _signal_first(tally: Tally, started: Any, stop: Any) -> None:
    while not stop.is_set() and not (tally.ok or tally.errors):
        time.sleep(0.05)
    started.set()


def phase(
    url: str, normal: tuple[int, list[bytes]], long: tuple[int, list[bytes]] | None, seconds: float
) -> dict[str, Tally]:
    """The normal clients for `seconds` (threads here), beside the long clients (in a spawned process) when given:
    they start first, and the normal clients start once the first long request has been answered."""
    tallies = {"normal": Tally()}
    context = multiprocessing.get_context("spawn")
    process = None
    if long is not None:
        started, stop, out = context.Event(), context.Event(), context.Queue()
        process = context.Process(target=long_process, args=(url, *long, started, stop, out), daemon=True)
        process.start()
        if not started.wait(120):
            sys.exit("the long clients got no answer within 120 s")
    stop_normal = threading.Event()
    timer = threading.Timer(seconds, stop_normal.set)
    timer.start()
    run_clients(url, *normal, tallies["normal"], stop_normal)
    if process is not None:
        stop.set()
        ok, errors = out.get(timeout=120)
        process.join(30)
        tallies["long"] = Tally(ok, Counter(errors))
    return tallies


def line(name: str, tally: Tally, seconds: float) -> str:
    errors = ", ".join(f"{count} x {outcome}" for outcome, count in sorted(tally.errors.items())) or "none"
    return f"| {name} | {tally.ok / seconds:,.1f} | {tally.ok:,} | {sum(tally.errors.values()):,} | {errors} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=ROOT / "benchmarks" / ".work" / "long_inputs")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--normal", type=int, default=8, help="clients sending ordinary texts")
    parser.add_argument("--long", type=int, default=2, help="clients sending one very long text each time")
    parser.add_argument("--long-chars", type=int, default=960_000)
    parser.add_argument("--max-input-chars", type=int, default=None, help="serve.max_input_chars in the fleet")
    args = parser.parse_args()
    begun = print_machine()
    prepare(args.workspace, args.data, args.max_input_chars)
    texts = pd.read_csv(args.data / "sms_spam" / "sms_spam.csv", keep_default_na=False)["text"].tolist()
    normal = [orjson.dumps({"inputs": [text]}) for text in texts[:500]]
    words = " ".join(texts[:200])
    long = [orjson.dumps({"inputs": [(words * (args.long_chars // len(words) + 1))[: args.long_chars]]})]
    port = free_port()
    command = [sys.executable, "-m", "shoal", "serve", "-w", str(args.workspace), "--port", str(port)]
    with server(command, port, path=ROUTE) as (url, _):
        alone = phase(url, (args.normal, normal), None, args.duration)
        mixed = phase(url, (args.normal, normal), (args.long, long), args.duration)
    limit = args.max_input_chars if args.max_input_chars is not None else "the default"
    print(
        f"\n{args.normal} normal clients (one SMS text per request), then the same with {args.long} clients sending "
        f"one {args.long_chars:,}-character text per request ({len(long[0]):,} bytes); {args.duration:.0f} s each; "
        f"serve.max_input_chars: {limit}\n"
    )
    print("| clients | requests/s (200) | answered 200 | errors | errors by kind |")
    print("|---|---|---|---|---|")
    print(line("normal, alone", alone["normal"], args.duration))
    print(line("normal, beside the long clients", mixed["normal"], args.duration))
    print(line("long", mixed["long"], args.duration))
    print_command(begun)


if __name__ == "__main__":
    main()
