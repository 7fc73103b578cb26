"""The HTTP protocol `shoal serve` runs uvicorn with: uvicorn's httptools protocol, one send per response.

uvicorn writes a response's status line and headers when the app sends `http.response.start`, and the body when it
sends `http.response.body`; uvloop sends each write at once, so every answer costs two `send` calls and two TCP
segments (and the client two wake-ups). `CorkedHttpTools` collects what a connection writes during one turn of the
event loop and sends it in one call at the end of that turn: the same bytes, in the same order, half the sends.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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
    """uvicorn's httptools protocol over a `_Corked` transport (`--http shoal.serve.protocol:CorkedHttpTools`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_Corked(transport, self.loop))  # type: ignore[arg-type]
