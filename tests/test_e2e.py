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
import time
from pathlib import Path

import httpx
import pytest

from client_load import Load
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
    """16 concurrent clients while the worker ingests, trains, gates and promotes, and the server swaps: not one
    failed request (non-2xx, connection error, timeout, dead client)."""
    ws, url, train = running
    first = ws.registry.alias("bank")
    with Load(f"{url}/v1/models/bank/predict", {"inputs": ["card has not arrived"]}) as load:
        load.wait(lambda _: load.every_client_got(first, 5), "the clients got no answers", timeout_s=60)
        more = write_rows(tmp_path / "more.csv", train.groupby("label").head(60))
        inbox = ws.inbox("bank")
        inbox.mkdir(parents=True, exist_ok=True)
        shutil.copy(more, inbox / "more.csv")
        load.wait(lambda answers: answers[-1].version != first, "the new version was never served", timeout_s=180)
        new = load.all_answers()[-1].version
        # keep every client sending across the swap until each has had answers from the new version
        load.wait(lambda _: load.every_client_got(new, 5), "not every client reached the new version", timeout_s=60)
    assert load.failures == [], load.failures[:10]
    load.check_switch(first, new)
    assert new == ws.registry.alias("bank")
    assert (inbox / "processed" / "more.csv").exists() and not (inbox / "more.csv").exists()
    kinds = [e.kind for e in ws.registry.events("bank")]
    assert kinds.count("promoted") == 2
