"""The worker's drift checks against a real server's prediction log: an alert is an event, a webhook POST and an
entry of `GET /v1/models/{name}/alerts`; with `retrain.on_drift` it queues a retrain only on data not trained on."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import yaml

from conftest import read_csv
from serve_fixtures import SPAM_ROWS, Trained, copy_workspace, running, wait_until
from shoal.data.ingest import ingest_file
from shoal.monitor import DRIFT_EVENT
from shoal.registry import PRODUCTION
from shoal.registry.database import now
from shoal.registry.jobs import JobQueue
from shoal.registry.prediction_log import PredictionLog
from shoal.worker.drift import DriftChecks
from shoal.worker.triggers import Triggers, schedule_slot


class Hook:
    """A webhook receiver on 127.0.0.1: the JSON bodies POSTed to it, and an event per body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hook.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()
                hook.arrived.set()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _predict(url: str, texts: list[str], ws_logged: PredictionLog, version: int, expected: int) -> None:
    for start in range(0, len(texts), 50):
        answer = httpx.post(f"{url}/v1/models/spam/predict", json={"inputs": texts[start : start + 50]}, timeout=10)
        assert answer.status_code == 200, answer.text
    wait_until(lambda: len(ws_logged.recent("spam", version, 10_000)) >= expected, "predictions were not logged")


def test_a_drift_alert_is_recorded_posted_listed_and_retrains_only_on_new_data(
    trained: Trained, tmp_path: Path, sms: pd.DataFrame
) -> None:
    hook = Hook()
    ws = copy_workspace(trained, tmp_path)
    fleet = yaml.safe_load(ws.fleet_path.read_text(encoding="utf-8"))
    fleet["workspace"]["alerts"] = {"webhook": hook.url}
    fleet["models"]["spam"]["monitor"] = {"every": "1h", "window": 300, "min_samples": 150}
    fleet["models"]["spam"]["retrain"].update({"on_drift": True, "on_new_data": False})
    ws.fleet_path.write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    ws.reload()
    version = ws.registry.alias("spam", PRODUCTION)
    assert version is not None
    log = PredictionLog.for_registry(ws.registry)
    queue = JobQueue(ws.registry)
    checks = DriftChecks(ws, Triggers(ws, queue))
    start = schedule_slot("1h", now())  # an interval's first instant: start + 1h + 5 min is in the next interval
    with running(ws) as url:
        first = checks.check("spam", at=start)  # a worker starting checks at once: nothing logged yet
        assert first is not None and first.verdict.pending is not None
        _predict(url, sms["text"].tolist()[SPAM_ROWS : SPAM_ROWS + 300], log, version, 300)
        calm = checks.check("spam", at=start + timedelta(hours=1))
        assert calm is not None and not calm.verdict.drifted, calm.verdict.summary()
        assert checks.check("spam", at=start + timedelta(hours=1, minutes=5)) is None  # same interval: no check
        restarted = DriftChecks(ws, Triggers(ws, queue))  # a worker (re)started: the registry has this interval's check
        assert restarted.check("spam", at=start + timedelta(hours=1, minutes=10)) is None
        assert ws.registry.events("spam", kind=DRIFT_EVENT) == []

        _predict(url, read_csv("tweeteval_offensive/test.csv")["text"].tolist()[:300], log, version, 600)
        moved = checks.check("spam", at=start + timedelta(hours=2))
        assert moved is not None and moved.verdict.drifted
        [alert] = ws.registry.events("spam", kind=DRIFT_EVENT)
        assert "drift in text features (MMD)" in alert.message
        assert "not retrained: every labelled drop is already trained on or queued" in alert.message
        assert hook.arrived.wait(10), "the webhook got nothing"
        assert hook.bodies[0]["model"] == "spam" and hook.bodies[0]["version"] == version
        assert {test["test"] for test in hook.bodies[0]["tests"] if test["fired"]} >= {"text features (MMD)"}
        assert queue.jobs("spam") == []
        listed = httpx.get(f"{url}/v1/models/spam/alerts", timeout=10).json()
        assert [a["id"] for a in listed["alerts"]] == [alert.id] and listed["alerts"][0]["tests"]
        assert 'shoal_alerts_total{model="spam"} 1' in httpx.get(f"{url}/metrics", timeout=10).text
        checked = httpx.get(f"{url}/v1/models/spam/alerts", params={"checks": "true"}, timeout=10).json()["alerts"]
        assert [c["kind"] for c in checked] == ["drift_check", "drift_check"]  # the calm check, then the drifted one
        assert [any(t["fired"] for t in c["tests"]) for c in checked] == [False, True]
        page = httpx.get(f"{url}/ui/models/spam", params={"fragment": "1"}, timeout=30).text
        assert 'id="plot-checks"' in page and page.count('class="series"') == 1 and page.count('class="alert"') == 1

        new_rows = tmp_path / "more.csv"
        sms.iloc[SPAM_ROWS + 300 : SPAM_ROWS + 400].to_csv(new_rows, index=False)
        ingest_file(ws, "spam", new_rows)
        again = checks.check("spam", at=start + timedelta(hours=3))
        assert again is not None and again.verdict.drifted
        [job] = queue.jobs("spam")
        assert job.reason.startswith("drift: drift in text features (MMD)")
        assert (
            f"retrain job {job.id} queued on 100 new row(s)" in ws.registry.events("spam", kind=DRIFT_EVENT)[-1].message
        )
    hook.server.shutdown()
