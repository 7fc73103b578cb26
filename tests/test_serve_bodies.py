"""Request bodies over real HTTP, the same on every route that reads one (issue 12: defect 8 and the HTTP minors):
a non-JSON Content-Type answers 415 (documented), a body that is not UTF-8 JSON the same 422 with its reason, and a
chunked body over the limit 413; an unexpected error is logged once; the open routes show no absolute paths."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from fastapi import APIRouter
from pydantic import BaseModel

from processes import wait_for
from serve_fixtures import Trained, copy_workspace, read_answer, running
from shoal.registry.jobs import JobQueue
from shoal.serve.bodies import BODY_ERRORS, JsonRoute

BODY_ROUTES = {
    "/v1/models/{name}/predict": "spam",
    "/v1/models/{name}/embed": "spam",
    "/v1/models/{name}/data": "spam",
    "/v1/models/{name}/feedback": "spam",
    "/v1/models/{name}/promote": "spam",
    "/v1/pipelines/{name}/predict": "inbox",  # no such pipeline here: the body is judged before the name (404)
}
LIMIT = 2048  # workspace.server.max_body_bytes of these servers


@pytest.fixture(scope="module")
def small_body_server(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ws = copy_workspace(trained, tmp_path_factory.mktemp("bodies"), server={"max_body_bytes": LIMIT})
    with running(ws) as url:
        yield url


def body_routes(url: str) -> list[str]:
    """Every route the OpenAPI schema documents with a request body, checked against the list above."""
    paths = httpx.get(f"{url}/openapi.json").json()["paths"]
    documented = {path for path, operations in paths.items() if any("requestBody" in o for o in operations.values())}
    assert documented == set(BODY_ROUTES), documented
    for path in documented:
        responses = paths[path]["post"]["responses"]
        assert {"413", "415", "422"} <= set(responses), (path, set(responses))
        assert responses["415"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    return [path.replace("{name}", model) for path, model in sorted(BODY_ROUTES.items())]


def test_every_json_body_route_answers_415_for_another_content_type(small_body_server: str) -> None:
    url = small_body_server
    body = b'{"inputs": ["hello"]}'
    for route in body_routes(url):
        for content_type in (
            None,
            "text/plain",
            "application/x-www-form-urlencoded",  # what `curl -d` sends
            "multipart/form-data; boundary=x",
            "application/json; charset=latin-1",
            "application/jsonx",
        ):
            headers = {"content-type": content_type} if content_type else {}
            answer = httpx.post(url + route, content=body, headers=headers)
            assert answer.status_code == 415, (route, content_type, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "unsupported_media_type"
            assert "Content-Type: application/json" in error["message"], error
        for content_type in ("application/json", "Application/JSON; charset=UTF-8", "application/vnd.shoal+json"):
            answer = httpx.post(url + route, content=body, headers={"content-type": content_type})
            assert answer.status_code != 415, (route, content_type, answer.text)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"inputs": ["caf\xe9"]}', "the body is not UTF-8: at byte 16 (0xe9): invalid continuation byte"),
        (b'{"inputs": ["\xed\xa0\x80"]}', "the body is not UTF-8: at byte 13 (0xed): invalid continuation byte"),
        (b"\xff\xfe{\x00}\x00", "the body is not UTF-8: at byte 0 (0xff): invalid start byte"),
        (b'{"inputs": ["\\ud800"]}', "the body is not valid JSON (no low surrogate in string"),
        (b'{"inputs": [NaN]}', "the body is not valid JSON (unexpected character"),
        (b'{"inputs": [1e999]}', "the body is not valid JSON (number is infinity"),
        (b'\xef\xbb\xbf{"inputs": ["a"]}', "the body is not valid JSON (UTF-8 byte order mark (BOM) is not supported"),
    ],
    ids=["latin-1", "surrogate bytes", "utf-16", "surrogate escape", "NaN", "infinity", "byte order mark"],
)
def test_a_body_that_is_not_utf8_json_answers_the_same_422_on_every_route(
    small_body_server: str, body: bytes, message: str
) -> None:
    url = small_body_server
    for route in body_routes(url):
        answer = httpx.post(url + route, content=body, headers={"content-type": "application/json"})
        assert answer.status_code == 422, (route, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "invalid_request" and error["message"].startswith(message), (route, error)


def chunked_post(url: str, route: str, chunks: list[bytes]) -> tuple[int, dict[str, Any]]:
    """POST `chunks` with Transfer-Encoding: chunked (no Content-Length) on a raw socket, in one write (a server that
    refuses early may close before a client writing chunk by chunk is done)."""
    parts = urlsplit(url)
    head = (
        f"POST {route} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head + body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


def test_a_chunked_body_over_the_limit_answers_413_on_every_body_route(small_body_server: str) -> None:
    url = small_body_server
    for route in body_routes(url):
        status, body = chunked_post(url, route, [b'{"inputs": ["', b"x" * (LIMIT // 2), b"y" * (LIMIT // 2), b'"]}'])
        assert status == 413, (route, body)
        assert body["error"]["code"] == "too_large" and str(LIMIT) in body["error"]["message"]
    # within the limit, the route reads the body a chunked request sent as if it had a Content-Length
    status, body = chunked_post(url, "/v1/models/spam/predict", [b'{"inputs": ["hello', b' there"]}'])
    assert status == 200 and body["predictions"][0]["label"] in ("ham", "spam"), body
    status, body = chunked_post(url, "/v1/models/spam/data", [b'{"rows": [{"text":', b' "hi"}]}'])
    assert status == 422 and body["error"]["code"] == "drop_rejected", body


# two or more path components from the root (this server's routes, e.g. "POST /v1/reload" in advice, are not files)
ABSOLUTE = re.compile(r"""(?<![\w.:/])/(?!v1/)(?:[^\s'"/]+/)+""")


def test_the_open_routes_show_no_absolute_server_paths(trained: Trained, tmp_path: Path) -> None:
    ws = copy_workspace(trained, tmp_path)
    root = str(ws.root)
    registry = ws.registry
    registry.record_event(
        "spam", "failed", f"could not read {root}/.shoal/a b/model.skops; and /home/someone/train.csv"
    )
    queue = JobQueue(registry)
    job, _ = queue.enqueue("spam", "train", registry.dataset_version("spam"), f"new drop from {root}/inbox/spam/a.csv")
    claimed = queue.claim("test-worker")
    assert claimed is not None and claimed.id == job.id
    queue.finish(job.id, "test-worker", error=f"FileNotFoundError: '{root}/.shoal/x.parquet' and '/srv/other/y.csv'")
    # a production version whose artifact went missing after its promotion: the server fails to load it, falls
    # back to the earlier production version, and says why in the detail and the history
    registry.set_alias("spam", trained.other, actor="manual", reason="a test promotes a version, then breaks it")
    artifact = registry.artifacts.path(registry.version("spam", trained.other).artifact_uri)
    assert artifact.is_dir()
    shutil.rmtree(artifact)
    with running(ws) as url:
        detail = httpx.get(f"{url}/v1/models/spam").json()
        history = httpx.get(f"{url}/v1/models/spam/history").json()
    assert detail["swap"]["last_error"] and detail["swap"]["last_error_version"] == trained.other
    assert detail["status"] == "fallback" and "POST /v1/reload" in detail["problem"]
    raw = [e.message for e in registry.events("spam")]
    assert any(root in message for message in raw)  # the registry keeps the whole paths ...
    for shown in (str(detail), str(history)):  # ... the open routes show none
        assert root not in shown and not ABSOLUTE.search(shown), ABSOLUTE.findall(shown)
    messages = [e["message"] for e in history["events"]]
    assert "could not read .shoal/a b/model.skops; and train.csv" in messages
    [shown_job] = [j for j in history["jobs"] if j["id"] == job.id]
    assert shown_job["error"] == "FileNotFoundError: '.shoal/x.parquet' and 'y.csv'"
    assert shown_job["reason"] == "new drop from inbox/spam/a.csv"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def exchange(sock: socket.socket, stream: BinaryIO, request_line: str) -> tuple[int, bytes]:
    """Send one request on a kept-alive connection and read its whole answer: (status, body)."""
    sock.sendall(f"{request_line} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    status, headers, body = read_answer(stream)
    assert headers.get("connection") != "close", headers
    return status, body


def test_an_unexpected_error_answers_500_and_is_logged_once(trained: Trained, tmp_path: Path) -> None:
    """`shoal serve` as users run it; the registry loses its events table, so describing a model fails."""
    ws = copy_workspace(trained, tmp_path)
    root = ws.root
    ws.close()
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "shoal", "serve", "-w", str(root), "--port", str(port)]
    with log.open("wb") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=sink, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/readyz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 60, "the server being ready")
        with sqlite3.connect(root / ".shoal" / "registry.db") as db:
            db.execute("DROP TABLE events")
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:  # one keep-alive connection
            stream = sock.makefile("rb")
            status, body = exchange(sock, stream, "GET /v1/models/spam")
            assert status == 500
            assert orjson.loads(body) == {
                "error": {"code": "internal", "message": "the server failed to answer; the error is in its log"}
            }
            assert exchange(sock, stream, "GET /healthz")[0] == 200  # the next request on that connection is answered
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    text = log.read_text()
    errors = [line for line in text.splitlines() if re.match(r"\S+ \S+ (ERROR|CRITICAL) ", line)]
    assert len(errors) == 1 and "unexpected error while answering GET /v1/models/spam" in errors[0], text
    assert "Exception in ASGI application" not in text and "no such table: events" in text, text


class Text(BaseModel):
    text: str


def test_a_json_body_route_must_document_its_body_errors() -> None:
    def endpoint(body: Text) -> None: ...

    router = APIRouter(route_class=JsonRoute)
    with pytest.raises(TypeError, match=re.escape("takes a JSON body: add shoal.serve.bodies.BODY_ERRORS")):
        router.add_api_route("/x", endpoint, methods=["POST"])
    router.add_api_route("/x", endpoint, methods=["POST"], responses=BODY_ERRORS)
    router.add_api_route("/y", lambda: None, methods=["POST"])  # no body: nothing to document
