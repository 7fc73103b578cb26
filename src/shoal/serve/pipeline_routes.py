"""`POST /v1/pipelines/{name}/predict` and `GET /v1/pipelines`: the fleet's pipelines served.

The routing is `shoal.pipelines.run` (shared with the evaluation); this module binds it to the server: each model's
loaded version is taken once per request (a swap during the request never mixes two versions of a model), each
step's inputs go through that model's batcher in one call (so the inputs of many requests still batch per step),
and each step's answers are written to the prediction log under its model, as its own predict route does, at the
index of the pipeline's input (so feedback names an input by the request id and index the pipeline answered). The body
rules are those of predict: JSON (415), UTF-8 (422), the body size (413), `inputs` as the pipeline's first step
reads them (422), no more inputs than any of its models takes (413), and the token when predictions are protected.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Awaitable, Callable
from functools import cache, reduce
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Request, Security
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.responses import Response

from shoal.fleet import FleetError
from shoal.pipelines.run import Answer, Rejected, checked_answers, run, step_answers
from shoal.pipelines.spec import Pipeline, Step
from shoal.registry.prediction_log import PredictionLog
from shoal.serve.auth import bearer, check_token
from shoal.serve.batcher import Loaded
from shoal.serve.bodies import BODY_ERRORS, read_json, require_json
from shoal.serve.codecs import codec_for, parse
from shoal.serve.errors import ServeError
from shoal.serve.metrics import UNKNOWN_MODEL
from shoal.serve.pool import Slot
from shoal.serve.predict import new_request_id, routed
from shoal.serve.schemas import UNAUTHORIZED, documented
from shoal.serve.state import ServeState, get_state
from shoal.tasks import get_codec, task_names
from shoal.tasks.codec import Parsed, Text
from shoal.tasks.regression.codec import Row


class PipelineRequest(BaseModel):
    """Inputs for every step that reads the pipeline's input: texts (text classification, forecasting) or rows
    (regression), as the pipeline's first step reads them."""

    model_config = ConfigDict(extra="forbid")

    inputs: Annotated[list[Text], Field(min_length=1)] | Annotated[list[Row], Field(min_length=1)] = Field(
        description="more than any step's max_inputs answers 413"
    )


@cache
def _step_answer(task: str) -> type[BaseModel]:
    answer = get_codec(task).answer
    return create_model(  # type: ignore[no-any-return]
        f"{answer.__name__}Step",
        __base__=answer,
        model=(str, Field(description="the step's model")),
        version=(int, Field(description="the version that answered (one per model for the whole request)")),
    )


class PipelineResultBase(BaseModel):
    """One input's way through the pipeline."""

    skipped: dict[str, str] = Field(description="each step that did not run for this input, with why")
    stopped_at: str | None = Field(description="the step whose `stop:` ended the pipeline for this input")


class PipelineResponseBase(BaseModel):
    pipeline: str
    request_id: str = Field(description="also in the X-Request-ID header; quote it when reporting a problem")
    versions: dict[str, int] = Field(description="the version of each model that answered this request")


@cache
def response_model() -> type[BaseModel]:
    """The documented answer (built on first use: it names every task's answer)."""
    steps = reduce(operator.or_, [_step_answer(task) for task in task_names() if get_codec(task).endpoint == "predict"])
    result = create_model(
        "PipelineResult",
        __base__=PipelineResultBase,
        steps=(
            dict[str, steps],  # type: ignore[valid-type]
            Field(
                description="each step that answered, by step name: its model, version and answer, as the model's "
                "own predict route answers"
            ),
        ),
    )
    return create_model(  # type: ignore[no-any-return]
        "PipelineResponse",
        __base__=PipelineResponseBase,
        results=(list[result], Field(description="one per input, in the order of the inputs")),  # type: ignore[valid-type]
    )


class PipelineInfo(BaseModel):
    name: str
    description: str | None
    steps: list[dict[str, Any]] = Field(description="as in the fleet file")
    models: dict[str, str] = Field(description="each model's status in this server (see GET /v1/models)")


class PipelineList(BaseModel):
    pipelines: list[PipelineInfo]


def _pipeline(state: ServeState, name: str) -> Pipeline:
    try:
        return state.ws.fleet.pipeline(name)
    except FleetError as error:
        raise ServeError(404, "not_found", f"{error}; see GET /v1/pipelines") from None


def _slots(state: ServeState, pipeline: Pipeline) -> dict[str, Slot]:
    slots = {}
    for model in pipeline.models:
        slot = state.pool.slots.get(model)
        if slot is None:
            raise ServeError(
                503, "model_unavailable", f"model {model!r} has no production version yet; train it with 'shoal train'"
            )
        slots[model] = slot
    return slots


def _snapshot(slots: dict[str, Slot]) -> dict[str, Loaded]:
    """Each model's serving version, taken once for the whole request."""
    loaded = {}
    for model, slot in slots.items():
        current = slot.current
        if current is None:
            raise slot.unavailable()
        loaded[model] = current
    return loaded


def _direct(pipeline: Pipeline) -> list[Step]:
    return [step for step in pipeline.steps if step.input is None]


async def _answer(state: ServeState, log: PredictionLog, name: str, body: bytes, request_id: str) -> bytes:
    data = read_json(body)  # a bad body answers the same 422 whatever the name, as on every body route
    pipeline = _pipeline(state, name)
    if type(data) is dict and data.keys() - {"inputs"}:
        extra = ", ".join(sorted(data.keys() - {"inputs"}))
        raise ServeError(422, "invalid_request", f"{extra}: unknown key; a pipeline request has only 'inputs'")
    slots = _slots(state, pipeline)
    direct = [slots[step.model] for step in _direct(pipeline)]
    inputs = parse(codec_for(direct[0].task), data, min(slot.spec.max_input_chars for slot in direct)).inputs
    limit = min(slot.max_inputs for slot in slots.values())
    if len(inputs) > limit:
        raise ServeError(
            413,
            "too_many_inputs",
            f"{len(inputs)} inputs in one request; pipeline {name!r} takes at most {limit} (the smallest "
            "serve.max_inputs of its models): split them into several requests",
        )
    loaded = _snapshot(slots)
    for step in _direct(pipeline):
        problems = loaded[step.model].predictor.check_inputs(inputs)
        if problems:
            raise ServeError(422, "invalid_request", f"step {step.name!r}: " + "; ".join(problems[:5]))

    async def predict(model: str, version: int, items: list[Any], positions: list[int]) -> list[Answer]:
        current, slot = loaded[model], slots[model]
        assert current.number == version

        async def answer(good: list[Any]) -> list[dict[str, Any]]:
            if slot.cascade is None:
                return step_answers(slot.task, current.predictor, good, await slot.batcher.predict(current, good))
            codec = get_codec(slot.task)  # a model with a cascade answers as on its own route: unsure inputs deferred
            parsed = Parsed(good, codec.fast_options({"inputs": good}) or {})
            return await slot.cascade.answers(slot.batcher, current, good, codec, parsed)

        answers = await checked_answers(current.predictor, items, answer)
        kept = [i for i, answer in enumerate(answers) if not isinstance(answer, Rejected)]
        if kept:
            logged = get_codec(slot.task).logged([items[i] for i in kept], [answers[i] for i in kept])
            log.record(request_id, model, version, *logged, positions=[positions[i] for i in kept])
        return answers

    outcomes = await run(pipeline, inputs, {model: current.number for model, current in loaded.items()}, predict)
    for outcome in outcomes:
        for step in outcome.steps:
            state.metrics.pipeline_steps.inc((name, step, "answered"))
        for step in outcome.skipped:
            state.metrics.pipeline_steps.inc((name, step, "skipped"))
    return orjson.dumps(
        {
            "pipeline": name,
            "request_id": request_id,
            "versions": {model: current.number for model, current in loaded.items()},
            "results": [outcome.ordered(pipeline) for outcome in outcomes],
        }
    )


async def respond(
    state: ServeState,
    log: PredictionLog,
    name: str,
    content_type: str | None,
    given_id: str | None,
    body: Callable[[], Awaitable[bytes]],
) -> tuple[int, bytes, dict[str, str]]:
    """(status, JSON body, headers) of a pipeline request, its metrics counted; `body` reads the request body. The
    server's raw ASGI path (`shoal.serve.predict.FastPredict`) calls it, as it does a model's `respond`."""
    started = time.perf_counter()
    request_id = new_request_id(given_id)
    label = name if name in state.ws.fleet.pipelines else UNKNOWN_MODEL
    try:
        require_json(content_type)
        content = await _answer(state, log, name, await body(), request_id)
    except ServeError as error:
        state.metrics.pipeline_request(label, error.status, time.perf_counter() - started)
        return error.status, error.body(), {**error.headers, "X-Request-ID": request_id}
    state.metrics.pipeline_request(label, 200, time.perf_counter() - started)
    return 200, content, {"X-Request-ID": request_id}


async def _respond(name: str, request: Request) -> Response:
    """The route as FastAPI documents it; reached only for a path `FastPredict.route` does not recognize."""
    return await routed(request, lambda state, log, *rest: respond(state, log, name, *rest))


_ERRORS = {
    **BODY_ERRORS,
    **documented(
        {
            404: "no such pipeline in the fleet file",
            413: "more inputs than a step's serve.max_inputs, or the body is too large",
            422: "the body is not UTF-8 JSON, not `{inputs: [...]}` as the pipeline's first step reads them, or a step "
            "that reads the pipeline's input cannot read one of them",
            500: "a model failed on an input (details in the server log)",
            503: "a model of the pipeline has no production version, is loading, its queue is full or the request "
            "missed its deadline",
        }
    ),
}


def router(protect: bool) -> APIRouter:
    """The pipeline routes; with `protect`, predict requires the token (as a model's predict does)."""
    routes = APIRouter(tags=["pipelines"])
    responses = {**_ERRORS, **(UNAUTHORIZED if protect else {})}

    async def serve(name: str, request: Request) -> Response:
        return await _respond(name, request)

    async def protected(
        name: str, request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)
    ) -> Response:
        check_token(get_state(request), credentials.credentials if credentials is not None else None)
        return await _respond(name, request)

    routes.add_api_route(
        "/v1/pipelines/{name}/predict",
        protected if protect else serve,
        name="predict_pipeline",
        methods=["POST"],
        summary="Predict with a pipeline",
        description="Run the pipeline's steps over each input: every step with its model's production version "
        "(one version per model for the whole request), batched with that model's other requests.",
        response_model=None,
        responses={200: {"model": response_model(), "description": "one result per input"}, **responses},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": PipelineRequest.model_json_schema()}},
            }
        },
    )
    routes.add_api_route(
        "/v1/pipelines", list_pipelines, methods=["GET"], summary="List pipelines", response_model=PipelineList
    )
    return routes


async def list_pipelines(request: Request) -> PipelineList:
    """Every pipeline of the fleet file, with its steps and the status of its models in this server."""
    state = get_state(request)
    statuses = state.pool.statuses()
    return PipelineList(
        pipelines=[
            PipelineInfo(
                name=name,
                description=pipeline.description,
                steps=[step.model_dump(by_alias=True, exclude_none=True) for step in pipeline.steps],
                models={model: statuses.get(model, "not served") for model in pipeline.models},
            )
            for name, pipeline in sorted(state.ws.fleet.pipelines.items())
        ]
    )
