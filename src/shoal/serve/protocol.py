"""The HTTP protocol `shoal serve` runs uvicorn with: uvicorn's httptools protocol, one send per response, and
predict requests answered without ASGI.

uvicorn writes a response's status line and headers when the app sends `http.response.start`, and the body when it
sends `http.response.body`; uvloop sends each write at once, so every answer costs two `send` calls and two TCP
segments (and the client two wake-ups). `CorkedHttpTools` collects what a connection writes during one turn of the
event loop and sends it in one call at the end of that turn: the same bytes, in the same order, half the sends.

A predict request the app can answer directly (`ShoalApp.direct`: a model's or a pipeline's predict route, a body
with a Content-Length within the limit) skips the ASGI layers — uvicorn's proxy-headers middleware, the app's,
the `receive`/`send` messages and their checks — which cost the event loop, per request, about as much as the
request's own work (a fifth of a one-model server's requests/s, benchmarks/RESULTS.md). uvicorn's own parsing,
keep-alive, pipelining and flow control stay: such a request runs as a task of uvicorn's request cycle, reads the
body as `receive` would and writes the answer as `send` would. Every other request (and every request while the
access log is on, or the client waits for `100 Continue`) goes through the ASGI app as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from starlette.requests import ClientDisconnect
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from shoal.serve.errors import error_body

log = logging.getLogger("shoal.serve")
#: the answer to a request its direct handler failed on (what `shoal.serve.errors.CatchAll` answers)
FAILED = error_body("internal", "the server failed to answer; the error is in its log")


class _Corked:
    """A transport whose writes go out together, once the code that made them yields to the event loop; everything
    else is the transport's own. Closing sends what is pending first."""

    __slots__ = ("_flushing", "_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._flushing = False

    def write(self, data: bytes) -> None:
        self._pending.append(data)
        if not self._flushing:
            self._flushing = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        pending, self._pending = self._pending, []
        if not pending or self._transport.is_closing():  # the client left: nothing to send it
            return
        if len(pending) == 1:
            self._transport.write(pending[0])
        else:
            self._transport.writelines(pending)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CorkedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol over a `_Corked` transport, answering directly what the app's `direct` takes
    (`--http shoal.serve.protocol:CorkedHttpTools`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_Corked(transport, self.loop))  # type: ignore[arg-type]
        self._direct = _direct_of(self.app)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        answer = None
        if self._direct is not None and app is self.app and not (cycle.waiting_for_100_continue or cycle.access_log):
            answer = self._direct(cycle.scope)
        if answer is None:
            super()._start_asgi_task(cycle, app)
            return
        task = self.loop.create_task(_answer_directly(cycle, answer))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)


def _direct_of(app: Any) -> Callable[[Any], Any] | None:
    """The app's `direct` hook, under uvicorn's proxy-headers middleware if it wraps the app (which nothing of a
    predict answer reads); None for any other app or wrapper."""
    if type(app) is ProxyHeadersMiddleware:
        app = app.app
    return getattr(app, "direct", None)


async def _answer_directly(cycle: RequestResponseCycle, answer: Callable[[Any], Any]) -> None:
    """`answer(read)`'s (status, body, headers) written as uvicorn's `send` writes a response with a Content-Length;
    an exception is logged and answered 500, a client gone before its body arrived gets nothing."""
    try:
        try:
            status, body, headers = await answer(lambda: _body(cycle))
        except ClientDisconnect:
            return
        except Exception:
            log.exception("unexpected error while answering %s %s", cycle.scope["method"], cycle.scope["path"])
            status, body, headers = 500, FAILED, {}
        if cycle.flow.write_paused and not cycle.disconnected:
            await cycle.flow.drain()
        if cycle.disconnected:
            return
        cycle.response_started = True
        parts = [STATUS_LINE[status]]
        for name, value in cycle.default_headers:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body))
        said_connection = False
        for key, value in headers.items():  # the handler's own (X-Request-ID checked, Retry-After, ...)
            name = key.lower()
            if name == "connection":
                said_connection = True
                cycle.keep_alive = cycle.keep_alive and "close" not in value.lower()
            parts += (name.encode("latin-1"), b": ", value.encode("latin-1"), b"\r\n")
        if not cycle.keep_alive and not said_connection:
            parts.append(b"connection: close\r\n")
        parts += (b"\r\n", body)
        cycle.transport.write(b"".join(parts))
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            cycle.transport.close()
        cycle.on_response()
    finally:
        cycle.on_response = lambda: None  # as uvicorn's `run_asgi` ends


async def _body(cycle: RequestResponseCycle) -> bytes:
    """The whole request body, read as uvicorn's `receive` reads it; ClientDisconnect if the client left first."""
    while cycle.more_body and not cycle.disconnected:
        cycle.flow.resume_reading()
        await cycle.message_event.wait()
        cycle.message_event.clear()
    if cycle.disconnected:
        raise ClientDisconnect
    body = bytes(cycle.body)
    cycle.body = bytearray()
    return body
