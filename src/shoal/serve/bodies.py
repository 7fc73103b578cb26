"""What every route that reads a JSON body accepts, and the one parser they all use.

A body must come as `Content-Type: application/json` (or `application/<something>+json`; a charset other than
UTF-8 is refused): anything else, or no Content-Type at all, answers 415. The body must be UTF-8 (else 422 naming the
first bad byte) and JSON as RFC 8259 defines it, read by orjson (else 422 with the reason): no `NaN` or `Infinity`,
no lone surrogate escapes, no byte order mark. The predict routes call `require_json` and `read_json` themselves
(they read their raw body); the routes whose body FastAPI validates use `JsonRoute`, which does the same before
FastAPI reads the body, so every route answers the same status and message for the same bad body.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from shoal.serve.errors import ServeError
from shoal.serve.schemas import documented

#: the answers a JSON body route documents besides its own
BODY_ERRORS = documented(
    {
        413: "the body is larger than workspace.server.max_body_bytes",
        415: "the body is not sent as Content-Type: application/json",
    }
)
_SEND_JSON = "send the body as UTF-8 JSON with 'Content-Type: application/json'"


def require_json(value: str | None) -> None:
    """Refuse with 415 unless the Content-Type header's value says JSON (in UTF-8)."""
    if value == "application/json":  # what nearly every client sends: nothing to take apart
        return
    if value is None:
        raise ServeError(415, "unsupported_media_type", f"the request has no Content-Type; {_SEND_JSON}")
    media, *parameters = (part.strip().lower() for part in value.split(";"))
    kind, _, subtype = media.partition("/")
    if kind != "application" or not (subtype == "json" or subtype.endswith("+json")):
        raise ServeError(415, "unsupported_media_type", f"Content-Type {media!r} is not JSON; {_SEND_JSON}")
    for parameter in parameters:
        key, _, charset = parameter.partition("=")
        if key.strip() == "charset" and charset.strip().strip('"') not in ("utf-8", "utf8"):
            raise ServeError(415, "unsupported_media_type", f"charset {charset.strip()!r} is not UTF-8; {_SEND_JSON}")


def read_json(body: bytes) -> Any:
    """The JSON value of a body, or a 422 saying why it is not one. orjson checks UTF-8 itself; the body is decoded
    only to say where a bad byte is."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise ServeError(
                422,
                "invalid_request",
                f"the body is not UTF-8: at byte {bad.start} (0x{body[bad.start]:02x}): {bad.reason}; {_SEND_JSON}",
            ) from None
        raise ServeError(
            422, "invalid_request", f"the body is not valid JSON ({error}); see the request schema at /docs"
        ) from None


class JsonRequest(Request):
    """A request whose `json()` is `read_json`: FastAPI parses the body through it."""

    async def json(self) -> Any:
        if not hasattr(self, "_parsed"):
            self._parsed = read_json(await self.body())
        return self._parsed


class JsonRoute(APIRoute):
    """An APIRoute whose JSON body (when it declares one) is checked by `require_json` and parsed by `read_json`
    before FastAPI validates it; such a route must document `BODY_ERRORS`."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if self.body_field is not None and not BODY_ERRORS.keys() <= self.responses.keys():
            raise TypeError(f"{path} takes a JSON body: add shoal.serve.bodies.BODY_ERRORS to its responses")

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def checked(request: Request) -> Response:
            require_json(request.headers.get("content-type"))
            request = JsonRequest(request.scope, request.receive)
            await request.json()  # a ServeError here is answered as it is; inside FastAPI it would become a 400
            return await handler(request)

        return checked
