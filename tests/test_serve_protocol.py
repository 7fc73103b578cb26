"""`CorkedHttpTools`: what a connection writes in one turn of the event loop goes out in one send, in order; closing
sends what is pending first; a real server answers pipelined requests whole and in order; predict requests skip
ASGI and are answered as through it."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import uvloop

from serve_fixtures import Trained, copy_workspace, read_answer, running
from shoal.serve.app import create_app
from shoal.serve.protocol import _Corked


class Socket(asyncio.Transport):
    """The operating system's side of a connection: what reached it, one entry per send."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.sends.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


def test_the_writes_of_one_turn_go_out_in_one_send_in_order() -> None:
    loop = uvloop.new_event_loop()
    try:
        sock = Socket()
        corked = _Corked(sock, loop)

        async def respond(head: bytes, body: bytes) -> None:
            sent = len(sock.sends)
            corked.write(head)
            corked.write(body)
            assert len(sock.sends) == sent  # nothing sent before the code yields
            await asyncio.sleep(0)

        loop.run_until_complete(respond(b"HTTP/1.1 200 OK\r\n\r\n", b"one"))
        loop.run_until_complete(respond(b"HTTP/1.1 200 OK\r\n\r\n", b"two"))
        assert sock.sends == [b"HTTP/1.1 200 OK\r\n\r\none", b"HTTP/1.1 200 OK\r\n\r\ntwo"]
        assert corked.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest is the transport's own

        corked.write(b"last words")
        corked.close()  # sends what is pending, then closes
        assert sock.sends[-1] == b"last words" and sock.closed
        loop.run_until_complete(asyncio.sleep(0))  # the scheduled send finds nothing left to send
        assert len(sock.sends) == 3

        gone = Socket()
        corked = _Corked(gone, loop)
        corked.write(b"for a client that left")
        gone.closed = True  # the connection was lost before the turn ended
        loop.run_until_complete(asyncio.sleep(0))
        assert gone.sends == []
    finally:
        loop.close()


def test_pipelined_requests_are_answered_whole_and_in_order(trained: Trained, tmp_path: Path) -> None:
    ws = copy_workspace(trained, tmp_path)
    with running(ws) as url:
        parts = urlsplit(url)
        requests = b""
        for i in range(5):
            body = orjson.dumps({"inputs": [f"free prize number {i}, call now"]})
            requests += (
                f"POST /v1/models/spam/predict HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
                f"X-Request-ID: pipelined-{i}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
        requests += f"GET /healthz HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode()
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
            sock.sendall(requests)  # six requests in one send, on one connection
            stream = sock.makefile("rb")
            answers = [read_answer(stream) for _ in range(6)]
            assert stream.read() == b""  # nothing more: the server closed after the last one
    for i, (status, headers, body) in enumerate(answers[:5]):
        assert status == 200 and headers.get("x-request-id") == f"pipelined-{i}", (status, body)
        answer = orjson.loads(body)
        assert answer["request_id"] == f"pipelined-{i}" and answer["predictions"][0]["label"] in ("ham", "spam")
    assert answers[5][0] == 200


def test_predict_requests_skip_asgi_and_are_answered_as_through_it(
    trained: Trained, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A predict request with a Content-Length within the limit is answered by the protocol itself (the app's ASGI
    stack never sees it) with the answer the ASGI path gives; a chunked body goes through ASGI. A failure of the
    direct answer is a logged 500 and the connection's next request is answered; `Connection: close` closes."""
    ws = copy_workspace(trained, tmp_path)
    app = create_app(ws)
    fast = app.fast  # type: ignore[attr-defined]
    through_asgi: list[str] = []
    stack, reply = fast.stack, fast.reply

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        through_asgi.append(scope["path"])
        await stack(scope, receive, send)

    async def failing(headers: Any, *rest: Any) -> Any:
        if (b"x-request-id", b"boom") in headers:
            raise RuntimeError("a bug in the handler")
        return await reply(headers, *rest)

    fast.stack, fast.reply = counted, failing
    body = orjson.dumps({"inputs": ["free prize, call now", "see you at lunch"]})
    with running(ws, app=app) as url, httpx.Client(base_url=url, timeout=30) as client:
        sent = {"Content-Type": "application/json", "X-Request-ID": "same"}
        direct = client.post("/v1/models/spam/predict", content=body, headers=sent)
        assert through_asgi == []
        chunked = client.post("/v1/models/spam/predict", content=iter([body]), headers=sent)  # no Content-Length
        assert through_asgi == ["/v1/models/spam/predict"]
        assert (direct.status_code, direct.json()) == (chunked.status_code, chunked.json()) == (200, direct.json())
        assert [direct.headers[k] for k in ("content-type", "x-request-id")] == ["application/json", "same"]
        missing = client.post("/v1/models/nope/predict", content=body, headers=sent)
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")

        with caplog.at_level("ERROR", logger="shoal.serve"):
            failed = client.post("/v1/models/spam/predict", content=body, headers={**sent, "X-Request-ID": "boom"})
        assert failed.status_code == 500 and failed.json()["error"]["code"] == "internal", failed.text
        assert "a bug in the handler" in caplog.text  # the traceback is in the log
        after = client.post("/v1/models/spam/predict", content=body, headers=sent)  # the same connection
        assert (after.status_code, after.json()) == (200, direct.json())

        parts = urlsplit(url)
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
            sock.sendall(
                f"POST /v1/models/spam/predict HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
                f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            stream = sock.makefile("rb")
            status, headers, _ = read_answer(stream)
            assert (status, headers.get("connection")) == (200, "close")
            assert stream.read() == b""  # closed by the server
    assert through_asgi == ["/v1/models/spam/predict"]
