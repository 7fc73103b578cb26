"""`POST /v1/models/{name}/predict`: the hot path, for every task kind.

The model's task picks the codec (`shoal.serve.codecs`) that reads the body — a fast path that accepts
exactly what the documented request model accepts, the pydantic model itself otherwise so a 422 names the
problem — and writes the answers. The answer is serialized with orjson. The OpenAPI schema documents the
request and response models of every task all the same.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from typing import Any

import orjson
from fastapi import APIRouter, Request, Security
from fastapi.security import HTTPAuthorizationCredentials
from starlette.responses import Response

from shoal.serve.auth import bearer, check_token
from shoal.serve.codecs import CODECS, codec_for
from shoal.serve.errors import ServeError, error_response, unavailable
from shoal.serve.metrics import UNKNOWN_MODEL
from shoal.serve.schemas import (
    EmbedRequest,
    EmbedResponse,
    ErrorResponse,
    ForecastResponse,
    PredictResponse,
    RegressionPredictResponse,
)
from shoal.serve.state import ServeState, get_state

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_PREFIX = os.urandom(4).hex()
_counter = itertools.count(1)


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id")
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return f"{_PREFIX}-{next(_counter):x}"


def _unknown(state: ServeState, name: str) -> ServeError:
    if name in state.ws.fleet.models:
        message = f"model {name!r} has no production version yet; train it with 'shoal train {name}'"
    else:
        served = ", ".join(sorted(state.pool.slots)) or "none yet"
        message = f"no model {name!r} is served here (models: {served}); see GET /v1/models"
    return ServeError(404, "not_found", message)


async def _answer(
    state: ServeState, name: str, request: Request, request_id: str, endpoint: str
) -> tuple[Response, str]:
    slot = state.pool.slots.get(name)
    if slot is None:
        raise _unknown(state, name)
    codec = codec_for(slot.task)
    if codec.endpoint != endpoint:
        raise ServeError(
            422,
            "wrong_endpoint",
            f"model {name!r} is a {slot.task} model: use POST /v1/models/{name}/{codec.endpoint}",
        )
    parsed = codec.parse(await request.body())
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
        raise unavailable("not_ready", f"model {name!r} is still loading; retry after the Retry-After delay")
    problems = loaded.predictor.check_inputs(inputs)
    if problems:
        more = f"; ... and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise ServeError(422, "invalid_request", "; ".join(problems[:5]) + more)
    outputs = await slot.batcher.predict(loaded, inputs)
    answers = codec.answers(outputs, loaded.predictor, parsed)
    request.app.state.prediction_log.record(request_id, name, loaded.number, *codec.logged(inputs, answers))
    body = {"model": name, "version": loaded.number, "request_id": request_id, codec.result_key: answers}
    headers = {"X-Request-ID": request_id}
    return Response(orjson.dumps(body), media_type="application/json", headers=headers), str(loaded.number)


async def predict(name: str, request: Request) -> Response:
    """Predict one or many inputs with the model's production version."""
    return await _serve(name, request, "predict")


async def embed(name: str, request: Request) -> Response:
    """Embed one or many texts with an embedding model's production version."""
    return await _serve(name, request, "embed")


async def _serve(name: str, request: Request, endpoint: str) -> Response:
    started = time.perf_counter()
    state = get_state(request)
    request_id = _request_id(request)
    try:
        response, version = await _answer(state, name, request, request_id, endpoint)
    except ServeError as error:
        slot = state.pool.slots.get(name)
        model = name if slot is not None else UNKNOWN_MODEL
        version = str(slot.current.number) if slot is not None and slot.current is not None else ""
        state.metrics.request(model, version, error.status, time.perf_counter() - started)
        return error_response(error.status, error.code, error.message, {**error.headers, "X-Request-ID": request_id})
    state.metrics.request(name, version, 200, time.perf_counter() - started)
    return response


async def _protected_predict(
    name: str, request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)
) -> Response:
    check_token(request, credentials)
    return await predict(name, request)


async def _protected_embed(
    name: str, request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)
) -> Response:
    check_token(request, credentials)
    return await embed(name, request)


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "no such model is served"},
    413: {"model": ErrorResponse, "description": "more inputs than serve.max_inputs, or the body is too large"},
    422: {
        "model": ErrorResponse,
        "description": "the body is not a valid request for the model's task, or the model's task is served "
        "by the other endpoint (predict / embed)",
    },
    500: {"model": ErrorResponse, "description": "the model itself failed on this input (details in the server log)"},
    503: {
        "model": ErrorResponse,
        "description": "the model is loading, its queue is full or the request missed its deadline; "
        "retry after Retry-After",
        "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}},
    },
}
_REQUEST_ID_HEADER = {"description": "the client's X-Request-ID if valid, else a new id", "schema": {"type": "string"}}


def router(protect: bool) -> APIRouter:
    """The predict and embed routes; with `protect`, they require the bearer token."""
    routes = APIRouter(tags=["predict"])
    responses = dict(_ERRORS)
    if protect:
        responses[401] = {"model": ErrorResponse, "description": "missing or wrong bearer token"}
    predicting = [codec for codec in CODECS.values() if codec.endpoint == "predict"]
    routes.add_api_route(
        "/v1/models/{name}/predict",
        _protected_predict if protect else predict,
        methods=["POST"],
        summary="Predict",
        description="Predict with the model's production version: texts to classify "
        "(text-classification), rows of feature values (regression) or series ids (forecasting).",
        response_model=None,
        responses={
            200: {
                "model": PredictResponse | RegressionPredictResponse | ForecastResponse,  # type: ignore[dict-item]
                "description": "one prediction per input: a label (text-classification), a value with its "
                "interval (regression), or the next horizon points of a series (forecasting)",
                "headers": {"X-Request-ID": _REQUEST_ID_HEADER},
            },
            **responses,
        },
        openapi_extra=_body(merged_request([codec.request.model_json_schema() for codec in predicting])),
    )
    routes.add_api_route(
        "/v1/models/{name}/embed",
        _protected_embed if protect else embed,
        methods=["POST"],
        summary="Embed",
        description="Sentence embeddings from an embedding model's production version, batched like predict.",
        response_model=None,
        responses={
            200: {
                "model": EmbedResponse,
                "description": "one unit-length vector per input",
                "headers": {"X-Request-ID": _REQUEST_ID_HEADER},
            },
            **responses,
        },
        openapi_extra=_body(EmbedRequest.model_json_schema()),
    )
    return routes


def merged_request(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    """One object schema for the predict body of every task: the union of the tasks' fields, with `inputs` any of
    the tasks' input lists (which one a model takes depends on its task)."""
    properties: dict[str, Any] = {}
    inputs: list[dict[str, Any]] = []
    for schema in schemas:
        for key, value in schema["properties"].items():
            if key == "inputs":
                if value not in inputs:
                    inputs.append(value)
            else:
                properties.setdefault(key, value)
    return {
        "title": "PredictRequest",
        "description": "texts (text-classification), feature rows (regression) or series ids (forecasting); "
        "top_k and return_probabilities apply to text-classification only",
        "type": "object",
        "properties": {"inputs": {"anyOf": inputs}, **properties},
        "required": ["inputs"],
        "additionalProperties": False,
    }


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
