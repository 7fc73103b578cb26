"""The predict routes, a model's and a pipeline's, are answered by `FastPredict` ahead of FastAPI; FastAPI's own route
for them (what it documents, and what answers when the fast path does not recognize a path) must answer every request
the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from serve_fixtures import Trained, copy_workspace, wait_until
from shoal.serve.app import create_app
from shoal.serve.predict import PIPELINE, FastPredict

TOKEN = {"Authorization": "Bearer sesame"}
JSON = {"Content-Type": "application/json"}
CASES: list[tuple[str, bytes, dict[str, str]]] = [
    ("/v1/models/spam/predict", b'{"inputs": ["free prize, call now", "lunch tomorrow?"], "top_k": 2}', JSON),
    ("/v1/models/spam/predict", b'{"inputs": ["hello"]}', {"Content-Type": "text/plain"}),
    ("/v1/models/spam/predict", b'{"inputs": ["hello"]}', {}),
    ("/v1/models/spam/predict", b'{"inputs": []}', JSON),
    ("/v1/models/spam/predict", b'{"inputs": ["a"], "extra": 1}', JSON),
    ("/v1/models/spam/predict", b'{"inputs": ["\xff"]}', JSON),
    ("/v1/models/spam/predict", b"not json", JSON),
    ("/v1/models/spam/predict", b'{"inputs": ["' + b"x" * 5000 + b'"]}', JSON),
    ("/v1/models/nope/predict", b'{"inputs": ["hello"]}', JSON),
    ("/v1/models/spam/embed", b'{"inputs": ["hello"]}', JSON),
    ("/v1/pipelines/screen/predict", b'{"inputs": ["free prize, call now", "lunch tomorrow?"]}', JSON),
    ("/v1/pipelines/screen/predict", b'{"inputs": ["hello"]}', {"Content-Type": "text/plain"}),
    ("/v1/pipelines/screen/predict", b'{"inputs": ["a"], "top_k": 2}', JSON),
    ("/v1/pipelines/screen/predict", b"not json", JSON),
    ("/v1/pipelines/screen/predict", b'{"inputs": ["' + b"x" * 5000 + b'"]}', JSON),
    ("/v1/pipelines/nope/predict", b'{"inputs": ["hello"]}', JSON),
]
#: a one-step pipeline over the trained `spam` model
PIPELINES = {"screen": {"steps": [{"model": "spam", "stop": {"label": ["spam"]}}]}}


def _answers(client: TestClient, headers: dict[str, str]) -> list[tuple[int, Any, str | None]]:
    found = []
    for path, body, extra in CASES:
        answer = client.post(path, content=body, headers={**headers, **extra, "X-Request-ID": "same-id"})
        found.append((answer.status_code, answer.json(), answer.headers.get("x-request-id")))
    return found


@pytest.mark.parametrize("protect", [False, True])
def test_the_fast_path_and_fastapis_route_answer_alike(
    protect: bool, trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOAL_TOKEN", "sesame")
    ws = copy_workspace(
        trained, tmp_path, server={"protect_predict": protect}, serve={"max_input_chars": 1000}, pipelines=PIPELINES
    )
    app = create_app(ws)
    fast = app.fast
    assert fast is not None
    with TestClient(app) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, "the model was not ready")
        answers = {}
        for name, path in (("fast", fast), ("fastapi", None)):
            app.fast = path
            answers[name] = _answers(client, TOKEN)
            if protect:  # no token: 401 before the body is looked at, on both paths
                for route in (CASES[0][0], "/v1/pipelines/screen/predict"):
                    refused = client.post(route, content=b"not json", headers=JSON)
                    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
                    assert refused.json()["error"]["code"] == "unauthorized"
    ws.close()
    assert answers["fast"] == answers["fastapi"]
    statuses = [status for status, _, _ in answers["fast"]]
    assert statuses == [200, 415, 415, 422, 422, 422, 422, 422, 404, 422, 200, 415, 422, 422, 422, 404]
    assert {request_id for _, _, request_id in answers["fast"]} == {"same-id"}


def test_only_posts_to_a_predict_route_or_a_pipeline_take_the_fast_path() -> None:
    fast = FastPredict.__new__(FastPredict)
    fast.endpoints = frozenset({"predict", "embed"})

    def route(path: str, method: str = "POST", root: str = "") -> tuple[str, str] | None:
        return fast.route({"type": "http", "method": method, "path": path, "root_path": root})

    assert route("/v1/models/spam/predict") == ("spam", "predict")
    assert route("/v1/models/vectors/embed") == ("vectors", "embed")
    assert route("/api/v1/models/spam/predict", root="/api") == ("spam", "predict")
    assert route("/v1/pipelines/inbox/predict") == ("inbox", PIPELINE)
    assert route("/v1/models/spam/predict", method="GET") is None  # FastAPI answers 405
    assert route("/v1/pipelines", method="GET") is None
    for path in (
        "/v1/models/spam/predict/",
        "/v1/models//predict",
        "/v1/models/spam/train",
        "/v2/models/spam/predict",
        "/v1/pipelines/inbox/embed",
        "/v1/pipelines//predict",
    ):
        assert route(path) is None
