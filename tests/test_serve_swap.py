"""Hot swap, failed loads, readiness and overload of `shoal serve`, with the registry changed under it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from client_load import Load
from serve_fixtures import Trained, copy_workspace, running
from test_corrupt_artifacts import BODY, corrupt

# what `shoal promote` does, from another process (importing only the registry keeps the test fast)
PROMOTE = """
import sys
from pathlib import Path
from shoal.registry import Registry
root = Path(sys.argv[1])
Registry(f"sqlite:///{root / '.shoal' / 'registry.db'}", root / ".shoal" / "artifacts").set_alias(
    "spam", int(sys.argv[2]), actor="manual", reason="swap test"
)
"""


def test_promotion_by_another_process_is_served_without_a_single_failure(trained: Trained, tmp_path: Path) -> None:
    """16 concurrent clients across a promotion made by another process: not one failed request (non-2xx,
    connection error, timeout, dead client), each client switches once, and the swap happens under load."""
    ws = copy_workspace(trained, tmp_path)
    old, new = trained.production, trained.other
    with running(ws) as url:
        with Load(f"{url}/v1/models/spam/predict", BODY) as load:
            load.wait(lambda _: load.every_client_got(old, 5), "the clients got no answers", timeout_s=30)
            subprocess.run([sys.executable, "-c", PROMOTE, str(ws.root), str(new)], check=True, timeout=60)
            promoted = time.monotonic()
            load.wait(lambda answers: answers[-1].version == new, "the new version was not served", timeout_s=3)
            # keep every client sending across the swap until each has had answers from the new version
            load.wait(lambda _: load.every_client_got(new, 5), "not every client reached the new version", timeout_s=30)
        assert load.failures == [], load.failures[:10]
        assert load.check_switch(old, new) - promoted < 3
        detail = httpx.get(f"{url}/v1/models/spam").json()
        assert detail["serving_version"] == detail["production_version"] == new
        assert detail["swap"]["swaps"] == 2 and detail["status"] == "ready"
        metrics = httpx.get(f"{url}/metrics").text
        assert f'shoal_model_serving{{model="spam",version="{new}"}} 1' in metrics
        assert f'shoal_model_serving{{model="spam",version="{old}"}}' not in metrics


def test_a_version_that_fails_to_load_leaves_the_old_one_serving_and_says_so(trained: Trained, tmp_path: Path) -> None:
    """A version promoted while it verified, then corrupted before this server loaded it: the old version keeps
    serving, and the status says `fallback` with the reason, not `ready`."""
    ws = copy_workspace(trained, tmp_path, server={"poll_interval_s": 3600})  # loads only at start and on reload
    old, new = trained.production, trained.other
    with running(ws) as url:
        registry = ws.registry
        registry.set_alias("spam", new, actor="manual", reason="promote, then the disk corrupts it")
        corrupt(ws.root, registry.version("spam", new))
        assert httpx.post(f"{url}/v1/reload").json() == {"models": {"spam": "fallback"}}

        detail = httpx.get(f"{url}/v1/models/spam").json()
        assert detail["serving_version"] == old and detail["production_version"] == new
        assert detail["status"] == "fallback" and detail["swap"]["last_error_version"] == new
        assert "ArtifactError" in detail["swap"]["last_error"] and "checksum" in detail["swap"]["last_error"]
        assert f"could not load v{new}" in detail["problem"] and f"still serving v{old}" in detail["problem"]
        assert "shoal doctor" in detail["problem"]
        response = httpx.post(f"{url}/v1/models/spam/predict", json=BODY)
        assert response.status_code == 200 and response.json()["version"] == old
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 200 and ready.json()["models"] == {"spam": "fallback"}
        assert ready.json()["problems"]["spam"] == detail["problem"]
        metrics = httpx.get(f"{url}/metrics").text
        assert f'shoal_model_loads_total{{model="spam",version="{new}",result="failed"}} 1' in metrics
        assert f'shoal_model_degraded{{model="spam",serving="{old}",production="{new}"}} 1' in metrics
        [event] = [e for e in registry.events("spam") if e.kind == "failed"]
        assert event.version == new and f"still serving v{old}" in event.message

        # putting the served version back in production clears the problem everywhere
        registry.set_alias("spam", old, actor="manual", reason="back to the version that works")
        assert httpx.post(f"{url}/v1/reload").json() == {"models": {"spam": "ready"}}
        assert httpx.get(f"{url}/readyz").json() == {"ready": True, "models": {"spam": "ready"}}
        assert httpx.get(f"{url}/v1/models/spam").json()["problem"] is None
        assert "shoal_model_degraded{" not in httpx.get(f"{url}/metrics").text


def test_overload_answers_503_quickly_with_retry_after(trained: Trained, tmp_path: Path) -> None:
    ws = copy_workspace(trained, tmp_path, serve={"max_queue": 4, "max_batch_size": 1, "deadline_ms": 1})
    with running(ws) as url:
        responses: list[httpx.Response] = []

        def burst() -> None:
            with httpx.Client(base_url=url) as http:
                for _ in range(5):
                    responses.append(http.post("/v1/models/spam/predict", json={"inputs": BODY["inputs"] * 2}))

        threads = [threading.Thread(target=burst) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        codes = {r.status_code for r in responses}
        assert codes <= {200, 503} and 503 in codes, codes
        refused = [r for r in responses if r.status_code == 503]
        assert all(r.headers["Retry-After"] == "1" for r in refused)
        assert {r.json()["error"]["code"] for r in refused} <= {"overloaded", "deadline"}
        metrics = httpx.get(f"{url}/metrics").text
        assert "shoal_rejected_total" in metrics and 'code="503"' in metrics
