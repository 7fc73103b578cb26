"""Refuse request bodies larger than `workspace.server.max_body_bytes` with 413, before a route reads them.

A declared Content-Length over the limit is refused at once; a chunked body is counted as it arrives.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shoal.serve.errors import ServeError, error_response


class BodyTooLarge(ServeError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, "too_large", f"the request body is larger than {limit} bytes; split it into several requests"
        )


class BodyLimit:
    """Pure ASGI middleware: costs one header scan for a body with a Content-Length within the limit."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                declared = value
                break
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.limit:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge(self.limit)
            return message

        return counted

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = BodyTooLarge(self.limit)
        await error_response(error.status, error.code, error.message, {"Connection": "close"})(scope, receive, send)
