"""Fixtures of the serve tests: a spam model trained once per session on real SMS data, copied into a fresh
workspace per test that changes it, and a real uvicorn server on 127.0.0.1 in a thread."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pytest
import uvicorn
import yaml
from starlette.types import ASGIApp

from conftest import FAST_WORKSPACE, read_csv, spam_model
from shoal.data.ingest import ingest_file
from shoal.registry import PRODUCTION
from shoal.serve.app import create_app
from shoal.serve.protocol import CorkedHttpTools
from shoal.train.trainer import train_models
from shoal.workspace import REGISTRY_ENV, Workspace

SPAM_ROWS = 500
POLL_S = 0.2
SERVE = {"max_batch_size": 8, "max_inputs": 64}


@dataclass
class Trained:
    root: Path
    production: int  # the version the gate promoted
    other: int  # the other registered version


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A workspace with `spam` trained (majority + tfidf-logreg) and one of them in production."""
    root = tmp_path_factory.mktemp("serve") / "trained"
    root.mkdir()
    fleet = {
        "workspace": {**FAST_WORKSPACE, "n_jobs": 1, "server": {"poll_interval_s": POLL_S}},
        "models": {"spam": spam_model(serve=SERVE, cv_folds=2)},
    }
    (root / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    data = root / "spam.csv"
    read_csv("sms_spam/sms_spam.csv").iloc[:SPAM_ROWS].to_csv(data, index=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(REGISTRY_ENV, raising=False)
        ws = Workspace(root)
        ingest_file(ws, "spam", data)
        [report] = train_models(ws, ["spam"])
        assert report.error is None, report.error
        production = ws.registry.alias("spam", PRODUCTION)
        numbers = [v.number for v in ws.registry.versions("spam")]
        ws.close()
    assert production is not None and len(numbers) == 2
    return Trained(root, production, next(n for n in numbers if n != production))


def copy_workspace(trained: Trained, folder: Path, **fleet_changes: Any) -> Workspace:
    """A private copy of the trained workspace; `server={...}` or `serve={...}` change its fleet file, `pipelines={...}`
    adds pipelines to it."""
    root = folder / "ws"
    shutil.copytree(trained.root, root)
    path = root / "shoal.yaml"
    fleet = yaml.safe_load(path.read_text(encoding="utf-8"))
    fleet["workspace"]["server"].update(fleet_changes.get("server", {}))
    fleet["models"]["spam"]["serve"].update(fleet_changes.get("serve", {}))
    if "pipelines" in fleet_changes:
        fleet["pipelines"] = fleet_changes["pipelines"]
    path.write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    return Workspace(root)


@contextmanager
def serving(app: ASGIApp, **config: Any) -> Iterator[str]:
    """`app` under uvicorn (`config`: more of `uvicorn.Config`) in a thread, on a free port of 127.0.0.1; yield its
    URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, "server did not start")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@contextmanager
def running(ws: Workspace, *, wait_ready: bool = True, app: ASGIApp | None = None, **config: Any) -> Iterator[str]:
    """Serve `ws` (its `app`, else `create_app(ws)`) with uvicorn (uvloop + `CorkedHttpTools`, as `shoal serve` does;
    `config`: more of `uvicorn.Config`) on a free port; yield its URL."""
    try:
        with serving(app or create_app(ws), loop="uvloop", http=CorkedHttpTools, lifespan="on", **config) as url:
            if wait_ready:
                wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, "models were not ready")
            yield url
    finally:
        ws.close()


def wait_until(condition: Any, message: str, timeout: float = 15.0) -> float:
    """Poll `condition` until it is true; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{message} within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def served(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Trained]]:
    """One server for the tests that only read: (url, trained)."""
    ws = copy_workspace(trained, tmp_path_factory.mktemp("served"))
    with running(ws) as url:
        yield url, trained


def read_answer(stream: BinaryIO) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer read from `stream`: (status, headers with lowercase names, body of its Content-Length)."""
    status_line = stream.readline()
    assert status_line, "the server closed the connection instead of answering"
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, stream.read(int(headers["content-length"]))
