"""End to end with real processes: `shoal serve` and `shoal worker` run apart on one workspace; a data file
dropped in the inbox is ingested, trained, gated, promoted and served with no restart, while a client keeps
sending requests and sees no failure."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from conftest import write_rows
from shoal.data.ingest import ingest_file
from shoal.train.trainer import train_models

INTENTS = 12


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def running(make_workspace, banking, tmp_path: Path):
    train, test = banking
    intents = sorted(train["label"].unique())[:INTENTS]
    train, test = train[train["label"].isin(intents)], test[test["label"].isin(intents)]
    ws = make_workspace(
        {
            "bank": {
                "task": "text-classification",
                "metric": "accuracy",
                "families": ["majority", "tfidf-logreg"],
                "retrain": {"min_new_rows": 1, "debounce_seconds": 0},
            }
        }
    )
    ingest_file(ws, "bank", write_rows(tmp_path / "test.csv", test), split="test")
    ingest_file(ws, "bank", write_rows(tmp_path / "small.csv", train.groupby("label").head(5)), split="train")
    train_models(ws)
    port = free_port()
    base = [sys.executable, "-m", "shoal"]
    processes = [
        subprocess.Popen([*base, "serve", "--port", str(port), "-w", str(ws.root)], start_new_session=True),
        subprocess.Popen([*base, "worker", "--poll", "0.5", "-w", str(ws.root)], start_new_session=True),
    ]
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        pytest.fail("server not ready within 60 s")
    yield ws, url, train
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        process.wait(timeout=30)


def test_a_drop_in_the_inbox_is_served_without_restart_or_failures(running, tmp_path: Path) -> None:
    ws, url, train = running
    first = ws.registry.alias("bank")
    statuses: Counter[int] = Counter()
    versions: list[int] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                response = http.post(f"{url}/v1/models/bank/predict", json={"inputs": ["card has not arrived"]})
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    versions.append(response.json()["version"])

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        more = write_rows(tmp_path / "more.csv", train.groupby("label").head(60))
        inbox = ws.inbox("bank")
        inbox.mkdir(parents=True, exist_ok=True)
        shutil.copy(more, inbox / "more.csv")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not versions or versions[-1] == first):
            time.sleep(0.2)
        time.sleep(1.0)  # keep sending across the swap
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    assert versions and versions[-1] != first, "the new version was never served"
    assert set(statuses) == {200}, statuses
    assert versions[-1] == ws.registry.alias("bank")
    assert (inbox / "processed" / "more.csv").exists() and not (inbox / "more.csv").exists()
    kinds = [e.kind for e in ws.registry.events("bank")]
    assert kinds.count("promoted") == 2
    assert sum(statuses.values()) > 50
