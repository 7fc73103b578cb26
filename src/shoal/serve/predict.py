"""`POST /v1/models/{name}/predict`: the hot path.

The body is parsed with orjson and checked by a fast path that accepts exactly what `PredictRequest`
accepts; anything else goes through `PredictRequest` itself so the 422 message names the problem. The answer
is serialized with orjson. The OpenAPI schema documents the request and response models all the same.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request, Security
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import ValidationError
from starlette.responses import Response

from shoal.serve.auth import bearer, check_token
from shoal.serve.errors import ServeError, error_response, unavailable, validation_message
from shoal.serve.metrics import UNKNOWN_MODEL
from shoal.serve.schemas import ErrorResponse, PredictRequest, PredictResponse
from shoal.serve.state import ServeState, get_state

_KEYS = frozenset(PredictRequest.model_fields)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_PREFIX = os.urandom(4).hex()
_counter = itertools.count(1)


def parse(body: bytes) -> tuple[list[str], int | None, bool]:
    """(inputs, top_k, return_probabilities) of a predict body, or a 422 `ServeError`."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ServeError(
            422, "invalid_request", 'the body is not valid JSON; send {"inputs": ["a text", ...]}'
        ) from None
    if type(data) is dict and data.keys() <= _KEYS:
        inputs = data.get("inputs")
        top_k = data.get("top_k")
        probabilities = data.get("return_probabilities", False)
        if (
            type(inputs) is list
            and inputs
            and (top_k is None or (type(top_k) is int and top_k >= 1))
            and type(probabilities) is bool
            and all(type(text) is str and text for text in inputs)
        ):
            return inputs, top_k, probabilities
    try:
        request = PredictRequest.model_validate(data)
    except ValidationError as error:
        raise ServeError(422, "invalid_request", validation_message(list(error.errors()))) from None
    return request.inputs, request.top_k, request.return_probabilities


def predictions(proba: np.ndarray, labels: list[str], top_k: int | None, probabilities: bool) -> list[dict[str, Any]]:
    best = proba.argmax(axis=1)
    scores = proba[np.arange(len(best)), best].tolist()
    answers = [{"label": labels[i], "probability": p} for i, p in zip(best.tolist(), scores, strict=True)]
    if top_k:
        k = min(top_k, len(labels))
        order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
        ranked = np.take_along_axis(proba, order, axis=1)
        for answer, indices, values in zip(answers, order.tolist(), ranked.tolist(), strict=True):
            answer["top_k"] = [{"label": labels[i], "probability": v} for i, v in zip(indices, values, strict=True)]
    if probabilities:
        for answer, row in zip(answers, proba.tolist(), strict=True):
            answer["probabilities"] = dict(zip(labels, row, strict=True))
    return answers


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


async def _answer(state: ServeState, name: str, request: Request, request_id: str) -> tuple[Response, str]:
    slot = state.pool.slots.get(name)
    if slot is None:
        raise _unknown(state, name)
    inputs, top_k, probabilities = parse(await request.body())
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
    proba = await slot.batcher.predict(loaded, inputs)
    answers = predictions(proba, loaded.labels, top_k, probabilities)
    request.app.state.prediction_log.record(request_id, name, loaded.number, inputs, [a["label"] for a in answers])
    body = {"model": name, "version": loaded.number, "request_id": request_id, "predictions": answers}
    headers = {"X-Request-ID": request_id}
    return Response(orjson.dumps(body), media_type="application/json", headers=headers), str(loaded.number)


async def predict(name: str, request: Request) -> Response:
    """Classify one or many texts with the model's production version."""
    started = time.perf_counter()
    state = get_state(request)
    request_id = _request_id(request)
    try:
        response, version = await _answer(state, name, request, request_id)
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


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "no such model is served"},
    413: {"model": ErrorResponse, "description": "more inputs than serve.max_inputs, or the body is too large"},
    422: {"model": ErrorResponse, "description": "the body is not a valid PredictRequest"},
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
    """The predict route; with `protect`, it requires the bearer token."""
    routes = APIRouter(tags=["predict"])
    body_schema = PredictRequest.model_json_schema()
    responses = dict(_ERRORS)
    if protect:
        responses[401] = {"model": ErrorResponse, "description": "missing or wrong bearer token"}
    routes.add_api_route(
        "/v1/models/{name}/predict",
        _protected_predict if protect else predict,
        methods=["POST"],
        summary="Predict",
        description="Classify one or many texts with the model's production version.",
        response_model=None,
        responses={
            200: {
                "model": PredictResponse,
                "description": "one prediction per input",
                "headers": {"X-Request-ID": _REQUEST_ID_HEADER},
            },
            **responses,
        },
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}}},
    )
    return routes
