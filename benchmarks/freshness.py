"""Freshness: how long from a data file landing in an inbox until the server answers with the new version.

    .venv/bin/python benchmarks/freshness.py [--data ../shared/data] [--families tfidf-logreg]

Banking77's training split is cut in two halves by a hash of the text; the official test split is the frozen
test set. The first half is trained, promoted and served (`shoal serve` and `shoal worker` run as separate
processes); once both are idle after their start-up (as a long-running server and worker are), the second half is
copied into the model's inbox, and a client polls predict until the
answering version changes. The time is broken down from the registry's event log:
detect + ingest, queue (debounce + claim), train, evaluate, gate, swap.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import psutil
import yaml
from machine import print_command, print_machine

from shoal.data.ingest import ingest_file
from shoal.data.split import hash_fraction
from shoal.tasks.text_classification import normalize
from shoal.train.trainer import train_models
from shoal.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def idle(pids: list[int], timeout: float, window: float = 1.0, busy: float = 0.1) -> bool:
    """Wait until the processes `pids` and their descendants used under `busy` CPU-seconds in the last `window`
    seconds (start-up done: the server's models loaded, the worker's imports), at most `timeout`; whether they did."""

    def cpu() -> float:
        total = 0.0
        for pid in pids:
            with suppress(psutil.NoSuchProcess):
                root = psutil.Process(pid)
                for process in [root, *root.children(recursive=True)]:
                    with suppress(psutil.NoSuchProcess):
                        times = process.cpu_times()
                        total += times.user + times.system
        return total

    deadline = time.monotonic() + timeout
    before = cpu()
    while time.monotonic() < deadline:
        time.sleep(window)
        now = cpu()
        if now - before < busy:
            return True
        before = now
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--workspace", type=Path, default=ROOT / "benchmarks" / ".work" / "freshness")
    parser.add_argument("--families", default="tfidf-logreg")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    begun = print_machine()
    root = args.workspace.resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    families = args.families.split(",")
    fleet = {
        "models": {
            "banking77": {
                "task": "text-classification",
                "metric": "accuracy",
                "families": families,
                "retrain": {"min_new_rows": 1, "debounce_seconds": 0},
            }
        }
    }
    (root / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False))
    train = pd.read_csv(args.data / "banking77" / "train.csv", keep_default_na=False)
    first = train["text"].map(lambda t: hash_fraction("half:" + normalize(t)) < 0.5)
    train[first].to_csv(root / "first_half.csv", index=False)
    train[~first].to_csv(root / "second_half.csv", index=False)
    ws = Workspace(root)
    ingest_file(ws, "banking77", root / "first_half.csv", split="train")
    ingest_file(ws, "banking77", args.data / "banking77" / "test.csv", split="test")
    train_models(ws)
    first_version = ws.registry.alias("banking77")
    print(
        f"first half: {int(first.sum())} rows -> v{first_version} "
        f"(accuracy {ws.registry.version('banking77', first_version).metrics.scores['accuracy']:.4f})"
    )

    port = free_port()
    command = [sys.executable, "-m", "shoal"]
    procs = [
        subprocess.Popen(
            [*command, "serve", "--port", str(port), "-w", str(root)],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [*command, "worker", "--poll", "0.5", "-w", str(root)],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=10) as client:
            for _ in range(240):
                try:
                    if client.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
            settled = idle([proc.pid for proc in procs], timeout=120)
            print(f"server and worker idle after start-up: {settled}")
            last_event = max(e.id for e in ws.registry.events("banking77"))
            inbox = ws.inbox("banking77")
            inbox.mkdir(parents=True, exist_ok=True)
            dropped_at = datetime.now(UTC)
            t0 = time.perf_counter()
            shutil.copy(root / "second_half.csv", inbox / "second_half.csv")
            served_at = None
            while time.perf_counter() - t0 < args.timeout:
                body = client.post(f"{url}/v1/models/banking77/predict", json={"inputs": ["card not arrived"]})
                if body.status_code == 200 and body.json()["version"] != first_version:
                    served_at = datetime.now(UTC)
                    break
                time.sleep(0.05)
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
    if served_at is None:
        sys.exit(f"no new version served within {args.timeout:.0f} s")
    events = [e for e in ws.registry.events("banking77") if e.id > last_event]

    def at(kind: str, last: bool = False) -> datetime:
        found = [e.at for e in events if e.kind == kind and e.at is not None]
        return found[-1] if last else found[0]

    new = [v for v in ws.registry.versions("banking77") if v.number > first_version]
    train_s = sum(v.metrics.train_seconds or 0 for v in new)
    eval_s = sum(v.metrics.eval_seconds or 0 for v in new)
    ingested, started = at("ingested"), at("job_started")
    trained, promoted = at("trained", last=True), at("promoted", last=True)
    phases = {
        "detect + ingest": (ingested - dropped_at).total_seconds(),
        "queue (debounce + claim)": (started - ingested).total_seconds(),
        "train (CV search + label audit + final fit)": train_s,
        "evaluate (test set + latency + RSS)": eval_s,
        "register + load data": (trained - started).total_seconds() - train_s - eval_s,
        "gate (re-score champion, paired test)": (promoted - trained).total_seconds(),
        "swap (server notices, loads, warms, switches)": (served_at - promoted).total_seconds(),
    }
    total = (served_at - dropped_at).total_seconds()
    print(
        f"\nfreshness, families {args.families}: {total:.1f} s from file drop to the new version answering "
        f"({os.cpu_count()} cores)\n"
    )
    print("| phase | seconds |\n|---|---:|")
    for phase, seconds in phases.items():
        print(f"| {phase} | {seconds:.1f} |")
    print(f"| **total** | **{total:.1f}** |")
    version = ws.registry.alias("banking77")
    print(f"\nserved v{version}: accuracy {ws.registry.version('banking77', version).metrics.scores['accuracy']:.4f}")
    print_command(begun)


if __name__ == "__main__":
    main()
