"""`POST /v1/models/{name}/predict` (and `/embed`): the hot path, for every task kind.

The model's task picks the codec (`shoal.tasks.<kind>.codec`, read through `shoal.serve.codecs`) that reads
the body — a fast path that accepts exactly what the documented request model accepts, the pydantic model
itself otherwise so a 422 names the problem — and writes the answers. The answer is serialized with orjson.
The routes, and the request and response models the OpenAPI schema documents, come from the tasks' codecs.
"""

from __future__ import annotations

import asyncio
import itertools
import operator
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial, reduce
from typing import Any

import orjson
from fastapi import APIRouter, Request, Security
from fastapi.security import HTTPAuthorizationCredentials
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from shoal.advice import no_production
from shoal.llm.answerer import LLMAnswerer
from shoal.registry.prediction_log import PredictionLog
from shoal.serve.auth import bearer, bearer_token, check_token
from shoal.serve.bodies import BODY_ERRORS, read_json, require_json
from shoal.serve.codecs import answer, codec_for, parse, response_model
from shoal.serve.errors import DISCONNECTED, CatchAll, ServeError, error_response
from shoal.serve.limits import BodyLimit
from shoal.serve.metrics import UNKNOWN_MODEL
from shoal.serve.redact import without_paths
from shoal.serve.schemas import UNAUTHORIZED, documented
from shoal.serve.state import ServeState, get_state
from shoal.tasks import get_codec, task_names
from shoal.tasks.codec import Codec

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_PREFIX = os.urandom(4).hex()
_counter = itertools.count(1)
_JSON = b"application/json"
#: `FastPredict.route`'s endpoint for `POST /v1/pipelines/{name}/predict`
PIPELINE = "pipeline"
#: a predict request's answer once its body is read: reply(read) -> (status, body, headers) (`FastPredict.direct`)
Direct = Callable[[Callable[[], Awaitable[bytes]]], Awaitable[tuple[int, bytes, dict[str, str]]]]
#: respond(state, log, content type, X-Request-ID, body reader) -> (status, body, headers), for one route
Responder = Callable[
    [ServeState, PredictionLog, str | None, str | None, Callable[[], Awaitable[bytes]]],
    Awaitable[tuple[int, bytes, dict[str, str]]],
]
#: respond(state, log, pipeline name, content type, X-Request-ID, body reader) -> (status, body, headers)
PipelineResponder = Callable[
    [ServeState, PredictionLog, str, str | None, str | None, Callable[[], Awaitable[bytes]]],
    Awaitable[tuple[int, bytes, dict[str, str]]],
]


def new_request_id(given: str | None) -> str:
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return f"{_PREFIX}-{next(_counter):x}"


async def not_served(state: ServeState, name: str) -> ServeError:
    """The 404 of a model this server does not serve: for a model of the fleet without a production version, why
    (the gate's last refusal) and what would help."""
    if name in state.ws.fleet.models:
        why = await asyncio.to_thread(no_production, state.ws.registry, name)
        message = (
            without_paths(why, state.ws.root)
            if why
            else f"model {name!r} has no production version yet; train it with 'shoal train {name}'"
        )
    else:
        served = ", ".join(sorted(state.pool.slots)) or "none yet"
        message = f"no model {name!r} is served here (models: {served}); see GET /v1/models"
    return ServeError(404, "not_found", message)


async def _answer(
    state: ServeState, log: PredictionLog, name: str, body: bytes, request_id: str, endpoint: str
) -> tuple[bytes, str]:
    """The JSON answer to a body whose Content-Type was accepted, and the version that made it."""
    data = read_json(body)
    slot = state.pool.slots.get(name)
    if slot is None:
        raise await not_served(state, name)
    codec = codec_for(slot.task)
    if codec.endpoint != endpoint:
        raise ServeError(
            422,
            "wrong_endpoint",
            f"model {name!r} is a {slot.task} model: use POST /v1/models/{name}/{codec.endpoint}",
        )
    parsed = parse(codec, data, slot.spec.max_input_chars)
    inputs = parsed.inputs
    if len(inputs) > slot.max_inputs:
        raise ServeError(
            413,
            "too_many_inputs",
            f"{len(inputs)} inputs in one request; model {name!r} takes at most {slot.max_inputs} "
            "(serve.max_inputs, capped by serve.max_queue): split them into several requests",
        )
    loaded = slot.current
    if loaded is None:
        raise slot.unavailable()
    problems = loaded.predictor.check_inputs(inputs)
    if problems:
        more = f"; ... and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise ServeError(422, "invalid_request", "; ".join(problems[:5]) + more)
    if isinstance(loaded.predictor, LLMAnswerer):  # a cold start: the LLM answers every input
        outputs = await slot.batcher.predict(loaded, inputs)
        answers = codec.answers(outputs, loaded.predictor, parsed)
        for one in answers:
            one["tier"] = "llm"
    elif slot.cascade is None:
        outputs = await slot.batcher.predict(loaded, inputs)
        answers = codec.answers(outputs, loaded.predictor, parsed)
    else:
        answers = await slot.cascade.answers(slot.batcher, loaded, inputs, codec, parsed)
    log.record(request_id, name, loaded.number, *codec.logged(inputs, answers))
    return orjson.dumps(answer(name, loaded.number, request_id, codec, answers)), str(loaded.number)


class FastPredict:
    """`POST /v1/models/{name}/{endpoint}` and `POST /v1/pipelines/{name}/predict` as a raw ASGI handler, answered
    before FastAPI's middleware and routing (`shoal.serve.app.ShoalApp`): per request, that stack costs more than
    reading the body and queueing it. It keeps
    what that stack did for these routes: the body size limit (`BodyLimit`, 413), one 500 for anything unexpected
    (`CatchAll`), the bearer token when predictions are protected (401, before the body is read), 400 when the client
    leaves before its body arrived; FastAPI still documents the routes (`router`)."""

    def __init__(
        self, app: Starlette, state: ServeState, endpoints: Iterable[str], pipelines: PipelineResponder
    ) -> None:
        self.app = app  # its `state.prediction_log` is read per request (tests replace it)
        self.state = state
        self.endpoints = frozenset(endpoints)
        self.pipelines = pipelines  # `shoal.serve.pipeline_routes.respond`
        self.stack: ASGIApp = CatchAll(BodyLimit(self._serve, state.max_body_bytes))

    def route(self, scope: Scope) -> tuple[str, str] | None:
        """(model or pipeline name, endpoint) when `scope` is a POST to a model's predict route or to a pipeline's
        (endpoint `PIPELINE`), else None."""
        if scope["method"] != "POST":
            return None
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root + "/"):
            path = path[len(root) :]
        parts = path.split("/")
        if len(parts) != 5 or parts[:2] != ["", "v1"] or not parts[3]:
            return None
        if parts[2] == "models" and parts[4] in self.endpoints:
            return parts[3], parts[4]
        if parts[2] == "pipelines" and parts[4] == "predict":
            return parts[3], PIPELINE
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send, name: str, endpoint: str) -> None:
        scope["path_params"] = {"name": name}
        scope["shoal.endpoint"] = endpoint
        await self.stack(scope, receive, send)

    def direct(self, scope: Scope) -> Direct | None:
        """For `shoal.serve.protocol`, which answers such a request without ASGI: the answer of a predict request
        whose body has a Content-Length within the limit, once `read` gives that body (`reply`); None for any other
        request, which goes through the ASGI app (and `BodyLimit`)."""
        route = self.route(scope)
        if route is None:
            return None
        for key, value in scope["headers"]:
            if key == b"content-length":
                if value.isdigit() and int(value) <= self.state.max_body_bytes:
                    return partial(self.reply, scope["headers"], *route)
                return None
        return None

    async def reply(
        self, headers: Iterable[tuple[bytes, bytes]], name: str, endpoint: str, read: Callable[[], Awaitable[bytes]]
    ) -> tuple[int, bytes, dict[str, str]]:
        """(status, JSON body, headers) of a predict request of `name` at `endpoint`; `read` gives its body (and
        raises ClientDisconnect when the client left first)."""
        content_type = given_id = authorization = None
        for key, value in headers:
            if key == b"content-type":
                content_type = content_type or value.decode("latin-1")
            elif key == b"x-request-id":
                given_id = given_id or value.decode("latin-1")
            elif key == b"authorization":
                authorization = authorization or value.decode("latin-1")
        if self.state.protect_predict:
            try:
                check_token(self.state, bearer_token(authorization))
            except ServeError as error:
                return error.status, error.body(), error.headers
        log = self.app.state.prediction_log
        if endpoint == PIPELINE:
            return await self.pipelines(self.state, log, name, content_type, given_id, read)
        return await respond(self.state, log, name, endpoint, content_type, given_id, read)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        name, endpoint = scope["path_params"]["name"], scope["shoal.endpoint"]
        try:
            status, content, headers = await self.reply(scope["headers"], name, endpoint, partial(_read_body, receive))
        except ClientDisconnect:
            await error_response(400, "client_disconnected", DISCONNECTED)(scope, receive, send)
            return
        raw = [(b"content-type", _JSON), (b"content-length", b"%d" % len(content))]
        raw += [(key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": content})


async def _read_body(receive: Receive) -> bytes:
    """The whole request body (as Starlette's `Request.body`, which raises ClientDisconnect too)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        if not message.get("more_body", False):
            return b"".join([*chunks, chunk]) if chunks else chunk
        chunks.append(chunk)


async def respond(
    state: ServeState,
    log: PredictionLog,
    name: str,
    endpoint: str,
    content_type: str | None,
    given_id: str | None,
    body: Callable[[], Awaitable[bytes]],
) -> tuple[int, bytes, dict[str, str]]:
    """(status, JSON body, headers) of a predict request, its metrics counted; `body` reads the request body."""
    started = time.perf_counter()
    request_id = new_request_id(given_id)
    try:
        require_json(content_type)  # the body's type first, as on every JSON body route
        content, version = await _answer(state, log, name, await body(), request_id, endpoint)
    except ServeError as error:
        slot = state.pool.slots.get(name)
        model = name if slot is not None else UNKNOWN_MODEL
        version = str(slot.current.number) if slot is not None and slot.current is not None else ""
        state.metrics.request(model, version, error.status, time.perf_counter() - started)
        return error.status, error.body(), {**error.headers, "X-Request-ID": request_id}
    state.metrics.request(name, version, 200, time.perf_counter() - started)
    return 200, content, {"X-Request-ID": request_id}


def _handler(endpoint: str, protect: bool) -> Callable[..., Awaitable[Response]]:
    """The route function of one endpoint as FastAPI documents it (with `protect`, it requires the bearer token).
    `ShoalApp` answers these paths with `FastPredict` before FastAPI routes a request; FastAPI reaches this function
    only for a path `FastPredict.route` does not recognize (an app mounted under another path)."""

    async def serve(name: str, request: Request) -> Response:
        return await _serve(name, request, endpoint)

    async def protected(
        name: str, request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)
    ) -> Response:
        check_token(get_state(request), credentials.credentials if credentials is not None else None)
        return await _serve(name, request, endpoint)

    return protected if protect else serve


async def _serve(name: str, request: Request, endpoint: str) -> Response:
    return await routed(request, lambda state, log, *rest: respond(state, log, name, endpoint, *rest))


async def routed(request: Request, responder: Responder) -> Response:
    """A predict route's answer (a model's or a pipeline's) when FastAPI routed the request."""
    headers = request.headers
    status, content, extra = await responder(
        get_state(request),
        request.app.state.prediction_log,
        headers.get("content-type"),
        headers.get("x-request-id"),
        request.body,
    )
    return Response(content, status_code=status, media_type="application/json", headers=extra)


_ERRORS = {
    **BODY_ERRORS,
    **documented(
        {
            404: "no such model is served",
            413: "more inputs than serve.max_inputs, or the body is too large",
            422: "the body is not UTF-8 JSON or not a valid request for the model's task, an input is longer than the "
            "model's serve.max_input_chars (code input_too_long, naming the input), or the model's task is served by "
            "the other endpoint (predict / embed)",
            500: "the model itself failed on this input (details in the server log)",
            502: "the LLM answering a cold-start model answered an input with no label of the set (llm_invalid_answer)",
            503: "the model is loading, its queue is full or the request missed its deadline; for a cold-start model, "
            "its LLM is down, too slow or its daily cap is spent (llm_unavailable, llm_capped); retry after "
            "Retry-After",
        }
    ),
}
_REQUEST_ID_HEADER = {"description": "the client's X-Request-ID if valid, else a new id", "schema": {"type": "string"}}


def router(protect: bool) -> APIRouter:
    """One route per endpoint the tasks' codecs name (predict, embed); with `protect`, they require the token."""
    routes = APIRouter(tags=["predict"])
    responses = {**_ERRORS, **(UNAUTHORIZED if protect else {})}
    for endpoint, codecs in endpoints().items():
        models = [response_model(task) for task in codecs]
        routes.add_api_route(
            f"/v1/models/{{name}}/{endpoint}",
            _handler(endpoint, protect),
            name=endpoint,  # the operation id stays predict_v1_models__name__predict_post
            methods=["POST"],
            summary=endpoint.capitalize(),
            description=f"{endpoint.capitalize()} with the model's production version, batched: "
            + _listing(f"{codec.inputs_doc} ({task})" for task, codec in codecs.items())
            + ".",
            response_model=None,
            responses={
                200: {
                    "model": reduce(operator.or_, models),
                    "description": "one answer per input: "
                    + _listing(f"{codec.answer_doc} ({task})" for task, codec in codecs.items()),
                    "headers": {"X-Request-ID": _REQUEST_ID_HEADER},
                },
                **responses,
            },
            openapi_extra=_body(merged_request(codecs)),
        )
    return routes


def endpoints() -> dict[str, dict[str, Codec]]:
    """The endpoints the tasks' codecs name (predict, embed), each with the codecs of the tasks it serves."""
    found: dict[str, dict[str, Codec]] = {}
    for task in task_names():
        codec = get_codec(task)
        found.setdefault(codec.endpoint, {})[task] = codec
    return found


def _listing(items: Iterable[str]) -> str:
    """'a, b or c'."""
    parts = list(items)
    return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else "".join(parts)


def merged_request(codecs: dict[str, Codec]) -> dict[str, Any]:
    """One object schema for the body of every task an endpoint serves: the union of the tasks' fields, with
    `inputs` any of the tasks' input lists (which one a model takes depends on its task)."""
    if len(codecs) == 1:
        return next(iter(codecs.values())).request.model_json_schema()
    properties: dict[str, Any] = {}
    inputs: list[dict[str, Any]] = []
    options: dict[str, list[str]] = {}
    for task, codec in codecs.items():
        for key, value in codec.request.model_json_schema()["properties"].items():
            if key == "inputs":
                if value not in inputs:
                    inputs.append(value)
            else:
                properties.setdefault(key, value)
                options.setdefault(key, []).append(task)
    notes = [f"{key} applies to {_listing(tasks)} only" for key, tasks in options.items() if len(tasks) < len(codecs)]
    return {
        "title": "PredictRequest",
        "description": "; ".join([_listing(f"{codec.inputs_doc} ({task})" for task, codec in codecs.items()), *notes]),
        "type": "object",
        "properties": {"inputs": {"anyOf": inputs}, **properties},
        "required": ["inputs"],
        "additionalProperties": False,
    }


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
