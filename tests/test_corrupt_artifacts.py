"""A corrupt artifact (a byte flipped, a file cut short, a file gone) on a real server and the real CLI: the server
verifies what it loads, falls back to the newest earlier production version that verifies and says so in /readyz,
GET /v1/models/{name}, /metrics, its log and a registry event; with none, the model answers a 503 that says what is
wrong and what to do; `shoal promote` and `shoal rollback` refuse a version that does not verify."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from serve_fixtures import Trained, copy_workspace, running, wait_until
from shoal.registry import Version
from shoal.workspace import Workspace

BODY = {"inputs": ["Free entry in 2 a weekly competition to win FA Cup final tickets"]}
CORRUPTIONS = ["flip", "truncate", "remove"]


def artifact_folder(ws_root: Path, version: Version) -> Path:
    return ws_root / ".shoal" / "artifacts" / version.artifact_uri.removeprefix("local:")


def corrupt(ws_root: Path, version: Version, how: str = "flip") -> None:
    """Damage the largest file of a registered version's artifact: flip one byte, cut it in half, or remove it."""
    folder = artifact_folder(ws_root, version)
    largest = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(largest.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
        largest.write_bytes(bytes(data))
    elif how == "truncate":
        largest.write_bytes(bytes(data[: len(data) // 2]))
    else:
        largest.unlink()


def production_history(ws: Workspace, *versions: int) -> None:
    """Promote `versions` in order (each verifies when it is promoted)."""
    for number in versions:
        ws.registry.set_alias("spam", number, actor="manual", reason=f"test history: v{number}")


def shoal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shoal", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_corrupt_production_artifact_at_start_up_falls_back_to_the_previous_production_version(
    trained: Trained, tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    ws = copy_workspace(trained, tmp_path)
    good, bad = trained.other, trained.production
    production_history(ws, good, bad)
    corrupt(ws.root, ws.registry.version("spam", bad), how)
    with caplog.at_level(logging.INFO, logger="shoal.serve"), running(ws) as url:
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 200 and ready.json()["models"] == {"spam": "fallback"}
        problem = ready.json()["problems"]["spam"]
        assert f"production v{bad} cannot be loaded (ArtifactError: artifact" in problem
        assert f"serving v{good} instead" in problem and "'shoal doctor'" in problem and "shoal promote spam" in problem
        assert str(ws.root) not in problem  # no server paths in an answer
        detail = httpx.get(f"{url}/v1/models/spam").json()
        assert (detail["status"], detail["serving_version"], detail["production_version"]) == ("fallback", good, bad)
        assert detail["problem"] == problem and detail["swap"]["last_error_version"] == bad
        assert detail["gate_history"][-1]["kind"] == "fallback"
        response = httpx.post(f"{url}/v1/models/spam/predict", json=BODY)
        assert response.status_code == 200 and response.json()["version"] == good
        metrics = httpx.get(f"{url}/metrics").text
        assert f'shoal_model_degraded{{model="spam",serving="{good}",production="{bad}"}} 1' in metrics
        assert f'shoal_model_loads_total{{model="spam",version="{bad}",result="failed"}} 1' in metrics
        assert f'shoal_model_serving{{model="spam",version="{good}"}} 1' in metrics
    events = [e for e in ws.registry.events("spam") if e.kind in ("failed", "fallback")]
    assert [(e.kind, e.version, e.payload["production"]) for e in events] == [("fallback", good, bad)]
    assert events[0].message == problem
    errors = [r.getMessage() for r in caplog.records if r.name == "shoal.serve" and r.levelno >= logging.ERROR]
    assert errors == [f"model spam: {problem}"]
    assert not any(BODY["inputs"][0] in r.getMessage() for r in caplog.records)  # no user text in the log


def test_with_no_production_version_that_verifies_the_model_answers_a_503_that_says_what_to_do(
    trained: Trained, tmp_path: Path
) -> None:
    ws = copy_workspace(trained, tmp_path)
    earlier, production = trained.other, trained.production
    production_history(ws, earlier, production)
    folder = artifact_folder(ws.root, ws.registry.version("spam", production))
    backup = tmp_path / "backup"
    shutil.copytree(folder, backup)
    corrupt(ws.root, ws.registry.version("spam", production), "truncate")
    corrupt(ws.root, ws.registry.version("spam", earlier), "flip")
    with running(ws, wait_ready=False) as url:
        wait_until(lambda: httpx.get(f"{url}/readyz").json()["models"].get("spam") == "failed", "no failure status")
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503 and ready.json()["models"] == {"spam": "failed"}
        problem = ready.json()["problems"]["spam"]
        assert f"production v{production} cannot be loaded" in problem and "no earlier production version" in problem
        response = httpx.post(f"{url}/v1/models/spam/predict", json=BODY)
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "model_unavailable" and "loading" not in error["message"]
        assert error["message"] == f"model 'spam' cannot be served: {problem}" and "shoal doctor" in problem
        metrics = httpx.get(f"{url}/metrics").text
        assert f'shoal_model_degraded{{model="spam",serving="none",production="{production}"}} 1' in metrics
        events = [e for e in ws.registry.events("spam") if e.kind in ("failed", "fallback")]
        assert [(e.kind, e.version) for e in events] == [("failed", production)]

        # repaired: POST /v1/reload tries the production version again at once
        shutil.rmtree(folder)
        shutil.copytree(backup, folder)
        assert httpx.post(f"{url}/v1/reload").json() == {"models": {"spam": "ready"}}
        response = httpx.post(f"{url}/v1/models/spam/predict", json=BODY)
        assert response.status_code == 200 and response.json()["version"] == production
        assert httpx.get(f"{url}/readyz").json() == {"ready": True, "models": {"spam": "ready"}}


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_promote_and_rollback_refuse_a_version_that_does_not_verify(trained: Trained, tmp_path: Path, how: str) -> None:
    ws = copy_workspace(trained, tmp_path)
    target, production = trained.other, trained.production
    production_history(ws, target, production)
    history = ws.registry.alias_history("spam")
    corrupt(ws.root, ws.registry.version("spam", target), how)
    for command in (["promote", "spam", str(target)], ["rollback", "spam"]):
        done = shoal(*command, "-w", str(ws.root))
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        [line] = done.stderr.strip().splitlines()
        assert line.startswith(f"error: refusing to point spam production at v{target}: artifact "), line
        assert "'shoal doctor'" in line
    assert ws.registry.alias("spam") == production and ws.registry.alias_history("spam") == history
    ws.close()
