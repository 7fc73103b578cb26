"""Refuse request bodies larger than `workspace.server.max_body_bytes` with 413, before any route reads them.

A declared Content-Length over the limit is refused at once. A body without one (`Transfer-Encoding: chunked`) is
read here, up to the limit, before the route runs: over it, the answer is the same 413; within it, the route gets
the body as if it had just arrived. Counting inside the route's own read instead would let the framework turn the
refusal into its own error (FastAPI answers 400 for any failure while it reads a body).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shoal.serve.errors import error_response


def too_large(limit: int) -> str:
    return f"the request body is larger than {limit} bytes; split it into several requests"


class BodyLimit:
    """Pure ASGI middleware: costs one header scan for a body with a Content-Length within the limit."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = chunked = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                declared = value
            elif key == b"transfer-encoding":
                chunked = value
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.limit:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if chunked is None:  # no body at all
            await self.app(scope, receive, send)
            return
        first = await self._read(receive)
        if first is None:
            await self._refuse(scope, receive, send)
            return
        await self.app(scope, _replay(first, receive), send)

    async def _read(self, receive: Receive) -> Message | None:
        """The whole body as one message (a disconnect as it came), or None when it is over the limit."""
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, "too_large", too_large(self.limit), {"Connection": "close"})
        await response(scope, receive, send)


def _replay(first: Message, receive: Receive) -> Receive:
    """A `receive` that gives `first`, then whatever the connection says next (a disconnect)."""
    pending: list[Message] = [first]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
