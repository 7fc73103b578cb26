"""The lifecycle routes on the real app: data in (stored, or refused with row and reason), bearer token, history,
and feedback joined to logged predictions, turned into a data drop and scored as live accuracy per version."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import spam_model, write_rows
from serve_fixtures import Trained, copy_workspace, running
from shoal.data.feedback import ingest_feedback
from shoal.data.ingest import ingest_file
from shoal.evaluate.live import live_accuracy
from shoal.registry.prediction_log import URL_ENV, PredictionLog
from shoal.serve import lifecycle_routes
from shoal.serve.app import create_app
from shoal.train.trainer import train_model
from shoal.worker.feedback import process_feedback
from shoal.worker.logs import FIELDS
from shoal.workspace import Workspace

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def workspace(make_workspace) -> Workspace:
    return make_workspace({"spam": spam_model(labels=["ham", "spam"])}, n_jobs=1)


@pytest.fixture
def client(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("SHOAL_TOKEN", TOKEN)
    app = create_app(workspace)
    if not any(getattr(route, "path", "") == "/v1/models/{name}/history" for route in app.routes):
        app.include_router(lifecycle_routes.router)
    return TestClient(app)  # no lifespan: these routes need no loaded model


def test_data_is_stored_or_refused_whole_with_row_and_reason(client: TestClient, workspace: Workspace, sms) -> None:
    rows = sms.head(30).to_dict("records")
    assert client.post("/v1/models/spam/data", json={"rows": rows}).status_code == 401
    stored = client.post("/v1/models/spam/data", json={"rows": rows, "split": "train"}, headers=AUTH)
    assert stored.status_code == 200, stored.text
    body = stored.json()
    assert body["created"] and body["n_rows"] == 30 and body["n_test"] == 0
    assert body["dataset_version"] == workspace.registry.dataset_version("spam")
    again = client.post("/v1/models/spam/data", json={"rows": rows, "split": "train"}, headers=AUTH).json()
    assert not again["created"] and again["drop"] == body["drop"]

    bad = [*sms.iloc[30:33].to_dict("records"), {"text": "", "label": "ham"}, {"text": "hi", "label": "eggs"}]
    refused = client.post("/v1/models/spam/data", json={"rows": bad}, headers=AUTH)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "drop_rejected" and error["source"] == "http"
    assert [(p["row"], p["reason"][:10]) for p in error["problems"]] == [(4, "empty text"), (5, "label 'egg")]
    assert len(workspace.registry.drops("spam")) == 1
    assert client.post("/v1/models/nope/data", json={"rows": rows}, headers=AUTH).status_code == 404
    assert client.post("/v1/models/spam/data", json={"rows": []}, headers=AUTH).status_code == 422

    history = client.get("/v1/models/spam/history").json()
    assert [e["kind"] for e in history["events"]] == ["ingested"] and history["jobs"] == []


def test_feedback_joins_predictions_becomes_data_and_scores_versions(
    client: TestClient, workspace: Workspace, sms, tmp_path: Path
) -> None:
    ingest_file(workspace, "spam", write_rows(tmp_path / "spam.csv", sms.head(300)))
    version = train_model(workspace, "spam").production
    assert version is not None
    log = PredictionLog.for_registry(workspace.registry)
    client.app.state.prediction_log = log  # what the server's predict path records into
    texts = ["WINNER!! claim your free prize now, call 09061701461", "see you at lunch?"]
    log.record("r1", "spam", version, texts)
    log.record("r2", "spam", version, ["are you coming tonight"], ["ham"])

    def send(body: dict) -> tuple[int, dict]:
        response = client.post("/v1/models/spam/feedback", json=body, headers=AUTH)
        return response.status_code, response.json()

    assert send({"request_id": "r1", "label": "spam"})[0] == 422  # two inputs: which one?
    status, joined = send({"request_id": "r1", "label": "spam", "index": 0})
    assert status == 200 and joined["version"] == version and joined["index"] == 0
    assert send({"request_id": "r1", "label": "ham", "index": 0})[0] == 409
    assert send({"request_id": "r1", "label": "ham", "index": 5})[0] == 422
    refused = send({"request_id": "r2", "label": "eggs"})[1]["error"]
    assert refused["code"] == "drop_rejected" and "--skip-invalid" not in refused["message"]
    assert send({"request_id": "unknown", "label": "ham"})[0] == 404
    status, joined = send({"request_id": "r2", "label": "spam"})
    assert status == 200 and joined["predicted"] == "ham"

    scores = live_accuracy(workspace, "spam", log)
    assert set(scores) == {version} and scores[version][0] == 2
    assert scores[version][1] in (0.0, 0.5)  # r2 was answered "ham" but is spam; r1 is re-predicted

    before = len(workspace.registry.drops("spam"))
    result = ingest_feedback(workspace, log, "spam")
    assert result is not None and result.created and result.drop.n_rows == 2
    assert result.drop.source.startswith("feedback")
    assert len(workspace.registry.drops("spam")) == before + 1
    assert ingest_feedback(workspace, log, "spam") is None  # nothing pending any more
    log.close()


def test_the_prediction_log_is_bounded(workspace: Workspace, tmp_path: Path, sms) -> None:
    ingest_file(workspace, "spam", write_rows(tmp_path / "spam.csv", sms.head(20)))
    log = PredictionLog(workspace.registry.engine, max_rows=5)
    for i in range(8):
        log.record(f"req-{i}", "spam", 1, [f"text {i}"])
    assert log.flush() == 8  # written, then the oldest beyond max_rows pruned
    with pytest.raises(ValueError, match=r"req-2.* is in the log"):
        log.add_feedback("spam", "req-2", "ham")
    assert log.add_feedback("spam", "req-3", "ham").text == "text 3"
    log.retention = timedelta(0)
    assert log.prune() == 5
    log.close()


def test_metrics_count_the_predictions_the_log_dropped(client: TestClient) -> None:
    log: PredictionLog = client.app.state.prediction_log
    log.flush_seconds, log.max_buffered = 3600, 2  # no background flush; a buffer of two rows
    log.record("r1", "spam", 1, ["a fine text", "lone \ud800 surrogate"])
    assert log.flush() == 1  # the surrogate is refused
    for i in range(3):
        log.record(f"later-{i}", "spam", 1, [f"text {i}"])  # one too many: the oldest goes
    metrics = client.get("/metrics").text
    assert 'shoal_prediction_log_dropped_total{reason="refused"} 1' in metrics
    assert 'shoal_prediction_log_dropped_total{reason="overflow"} 1' in metrics
    assert "shoal_prediction_log_buffered{} 2" in metrics
    log.close()


def test_feedback_refused_whole_is_settled_and_logged(
    workspace: Workspace, tmp_path: Path, sms, caplog: pytest.LogCaptureFixture
) -> None:
    ingest_file(workspace, "spam", write_rows(tmp_path / "spam.csv", sms.head(20)))
    log = PredictionLog.for_registry(workspace.registry)
    log.record("r1", "spam", 1, ["are you coming tonight"])
    log.add_feedback("spam", "r1", "eggs")  # the log joins any label (as if the fleet's labels changed since)
    drops = len(workspace.registry.drops("spam"))
    with caplog.at_level(logging.INFO, logger="shoal.worker"):
        process_feedback(workspace, log, "spam")  # the worker's pass: logs, never raises
    [record] = [r for r in caplog.records if r.getMessage() == "feedback_rejected"]
    assert "eggs" not in str(record.__dict__[FIELDS])  # the log names the row, never the user's label
    assert log.feedback("spam", pending=True) == []  # settled: not retried at every scan
    assert len(workspace.registry.drops("spam")) == drops
    assert [e.kind for e in workspace.registry.events("spam")] == ["ingested"]  # the refusal added no event
    log.close()


def test_a_poisoned_prediction_leaves_the_log_and_feedback_working(
    trained: Trained,
    registry_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 12: on PostgreSQL a NUL in a predicted text made every later write and feedback call fail."""
    monkeypatch.delenv("SHOAL_TOKEN", raising=False)
    monkeypatch.setenv(URL_ENV, registry_url)  # the prediction log in its own database: SQLite or PostgreSQL
    refused = 1 if registry_url.startswith("postgresql") else 0  # SQLite stores NUL
    with caplog.at_level(logging.INFO, logger="shoal"), running(copy_workspace(trained, tmp_path)) as url:

        def predict(text: str) -> str:
            answer = httpx.post(f"{url}/v1/models/spam/predict", json={"inputs": [text]}, timeout=30)
            assert answer.status_code == 200, answer.text
            return str(answer.json()["request_id"])

        def feedback(request_id: str) -> int:
            body = {"request_id": request_id, "label": "ham"}
            return httpx.post(f"{url}/v1/models/spam/feedback", json=body, timeout=30).status_code

        before = predict("see you at lunch?")
        poisoned = predict("poison \u0000 zebra")
        after = predict("are you coming tonight")
        assert (feedback(before), feedback(after)) == (200, 200)
        assert feedback(poisoned) == (404 if refused else 200)
        assert feedback(predict("still logging")) == 200
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
    assert f'shoal_prediction_log_dropped_total{{reason="refused"}} {refused}' in metrics
    assert "zebra" not in caplog.text
