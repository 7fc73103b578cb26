"""README's main job: `shoal demo` on an empty folder trains, promotes and serves the demo fleet, then retrains
live from an inbox drop and serves the new version, and stops cleanly."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(900)
def test_demo_runs_the_whole_loop_and_exits(tmp_path: Path) -> None:
    workspace = tmp_path / "demo"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "shoal",
            "demo",
            "-w",
            str(workspace),
            "--port",
            str(free_port()),
            "--exit-after-retrain",
            "--retrain-timeout",
            "420",  # generous: a busy machine (CI beside a benchmark) retrains slowly
        ],
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "curl -s -X POST http://127.0.0.1:" in out and "/v1/models/banking77/predict" in out
    assert "/v1/pipelines/inbox/predict" in out and "end to end" in out and "step banking77" in out
    assert "the server now answers banking77 with v" in out and "with no restart" in out
    assert (workspace / "inbox" / "banking77" / "processed" / "banking77_second.csv").exists()
