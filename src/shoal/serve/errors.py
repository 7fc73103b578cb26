"""Every error the server answers, as `{"error": {"code": ..., "message": ...}}` with the right status.

`ServeError` is raised by the server's own code; the handlers also turn FastAPI's validation errors and
Starlette's HTTP errors (unknown route, wrong method) into the same shape. `CatchAll` turns anything unexpected
into a 500 that never leaks a traceback to the client, and logs that traceback once (an exception handler for
`Exception` would not do: Starlette re-raises after it answers, so the server logs the same traceback again).
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shoal.llm.errors import LLMAnswerInvalid, LLMError, SpendCapReached
from shoal.registry.artifacts import StoreFull

log = logging.getLogger("shoal.serve")

#: how long a client should wait before retrying an overloaded or not yet ready model
RETRY_AFTER_S = 1

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    503: "unavailable",
}


class ServeError(Exception):
    """An answer other than success: HTTP status, a stable machine code and a message saying what to do."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> bytes:
        return error_body(self.code, self.message)


def unavailable(code: str, message: str) -> ServeError:
    """A 503 that tells the client when to come back."""
    return ServeError(503, code, message, {"Retry-After": str(RETRY_AFTER_S)})


def llm_error(error: LLMError, cooldown_s: float) -> ServeError:
    """The answer to a request with an input the model's LLM (its cold start) did not answer: 503 with Retry-After
    (the endpoint's rest after a failure; for a spent daily cap, the next UTC day), or 502 for an answer outside the
    labels (counted, never used). The message names the endpoint, never a key or a text."""
    if isinstance(error, LLMAnswerInvalid):
        return ServeError(502, "llm_invalid_answer", f"{error}; the answer is not used: retry, or send feedback")
    if isinstance(error, SpendCapReached):
        now = datetime.now(UTC)
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
        wait = math.ceil((midnight - now).total_seconds())
        return ServeError(503, "llm_capped", str(error), {"Retry-After": str(max(1, wait))})
    message = f"{error}; retry after the Retry-After delay"
    return ServeError(503, "llm_unavailable", message, {"Retry-After": str(max(1, math.ceil(cooldown_s)))})


def error_body(code: str, message: str) -> bytes:
    """The JSON of every error answer: `{"error": {"code": ..., "message": ...}}`."""
    return orjson.dumps({"error": {"code": code, "message": message}})


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(code, message), status_code=status, headers=headers, media_type="application/json")


def validation_message(errors: list[dict]) -> str:  # type: ignore[type-arg]
    """Pydantic errors as one line: `inputs.0: String should have at least 1 character; ...`."""
    parts = []
    for item in errors[:5]:
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body") or "body"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more + "; see the request schema at /docs"


async def _serve_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, ServeError)
    return error_response(error.status, error.code, error.message, error.headers)


async def _validation_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    return error_response(422, "invalid_request", validation_message(list(error.errors())))


async def _http_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    code = _CODES.get(error.status_code, "error")
    message = str(error.detail)
    if error.status_code == 404:
        message = "no such endpoint; the API is described at /docs and /openapi.json"
    return error_response(error.status_code, code, message, dict(error.headers or {}))


async def _store_full(_request: Request, error: Exception) -> Response:
    """A write the store could not make (its disk is full): nothing was stored, the client may retry later."""
    return error_response(507, "insufficient_storage", f"{error}", {"Retry-After": "60"})


DISCONNECTED = "the client closed the connection before sending the body"


async def _disconnected(_request: Request, _error: Exception) -> Response:
    return error_response(400, "client_disconnected", DISCONNECTED)


class CatchAll:
    """Pure ASGI middleware: an exception that escapes the app is logged once, with its traceback, and answered
    500 (when no answer has started; otherwise the connection is closed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            log.exception("unexpected error while answering %s %s", scope.get("method", ""), scope.get("path", ""))
            if not started:
                response = error_response(500, "internal", "the server failed to answer; the error is in its log")
                await response(scope, receive, send)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServeError, _serve_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _disconnected)
    app.add_exception_handler(StoreFull, _store_full)
