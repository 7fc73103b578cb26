"""The HTTP API's request and response models: the single source of the OpenAPI schema.

A task's predict request and answer models live with its codec (`shoal.tasks.<kind>.codec`); the envelope
every answer shares is here. The other routes validate and serialize through these models directly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

#: loading (nothing served yet), ready (the production version is served), swapping (a new production version is
#: loading), fallback (the production version failed to load: an earlier one is served), failed (nothing loads)
Status = Literal["loading", "ready", "swapping", "fallback", "failed"]


class AnswerEnvelope(BaseModel):
    """What every task's answer carries besides its answers (`shoal.serve.codecs.response_model` adds those)."""

    model: str
    version: int = Field(description="the version that answered (stable across a hot swap for one request)")
    request_id: str = Field(description="also in the X-Request-ID header; quote it when reporting a problem")


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. not_found, invalid_request, overloaded")
    message: str = Field(description="what went wrong and what to do next")


class ErrorResponse(BaseModel):
    error: ErrorBody


RETRY_AFTER_HEADER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}


def documented(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """A route's `responses` for its error statuses: each an `ErrorResponse`, a 503 with its Retry-After header."""
    return {
        status: {
            "model": ErrorResponse,
            "description": description,
            **({"headers": RETRY_AFTER_HEADER} if status == 503 else {}),
        }
        for status, description in descriptions.items()
    }


UNAUTHORIZED = documented({401: "missing or wrong bearer token"})


class KeyMetrics(BaseModel):
    """The serving version's evaluation on the frozen test set."""

    metric: str = Field(description="the fleet metric of this model")
    value: float | None = Field(None, description="its value")
    ci: list[float] | None = Field(None, description="its 95% bootstrap confidence interval [low, high]")
    accuracy: float | None = None
    macro_f1: float | None = None
    p95_ms_batch1: float | None = None
    throughput_per_s: float | None = None
    cost_per_million: float | None = Field(None, description="$ per million predictions (measured CPU time)")


class LLMTier(BaseModel):
    """A model's LLM endpoint and what it costs: $ from the tokens its answers measured and the endpoint's declared
    prices, beside the small tier's measured cost."""

    role: Literal["answerer", "fallback"] = Field(
        description="answerer: a cold start, the LLM answers every input (no small version promoted yet); fallback: "
        "it answers only the inputs the small version is unsure of"
    )
    endpoint: str
    model: str
    price_in: float = Field(description="declared $ per million prompt tokens")
    price_out: float = Field(description="declared $ per million completion tokens")
    calls: int = Field(description="the LLM's answers whose tokens were measured (in the registry's cache)")
    tokens_in_per_call: float | None
    tokens_out_per_call: float | None
    cost_per_million: float | None = Field(description="$ per million LLM calls (None before one was measured)")
    small_cost_per_million: float | None = Field(None, description="fallback: the small tier's $ per million")
    deferred: float | None = Field(None, description="fallback: the share of inputs sent to the LLM (declared)")
    deferred_measured: bool | None = None
    cost_per_million_predictions: float | None = Field(
        description="$ per million of the model's predictions: the LLM's (answerer), or the small tier's plus the "
        "deferred share of the LLM's (fallback)"
    )


class ModelSummary(BaseModel):
    name: str
    task: str | None
    production_version: int | None = Field(description="the version the registry names as production")
    serving_version: int | None = Field(description="the version this server answers with")
    status: Status
    problem: str | None = Field(
        None, description="with status fallback or failed: why the production version is not served, what to do"
    )
    metrics: KeyMetrics | None = Field(description="of the serving version")
    llm: LLMTier | None = Field(None, description="the model's LLM, if it has one (a cold start, an LLM fallback)")


class ModelList(BaseModel):
    models: list[ModelSummary]


class VersionInfo(BaseModel):
    number: int
    family: str
    created_at: datetime
    metric: str | None
    value: float | None
    production: bool
    serving: bool
    feedback_count: int = Field(0, description="labels received through POST /v1/models/{name}/feedback")
    live_accuracy: float | None = Field(None, description="share of those labels this version predicted")


class GateFigures(BaseModel):
    """The paired test a gate decision rests on: the challenger against production (or the floor)."""

    metric: str
    delta: float | None = Field(description="the challenger's gain on the metric (positive: better)")
    ci: list[float | None] = Field(description="95% confidence interval of delta")
    p_value: float | None
    test: str = Field(description="the paired test, e.g. mcnemar or bootstrap")


class GateEvent(BaseModel):
    kind: str = Field(description="promoted, rejected, rolled_back, failed or fallback")
    version: int | None
    message: str
    at: datetime | None
    decision: GateFigures | None = Field(None, description="the gate's figures (decisions of the gate only)")


class SwapStatus(BaseModel):
    loaded_at: datetime | None = Field(description="when the serving version was loaded and warmed")
    swaps: int = Field(description="versions loaded by this server process")
    last_error: str | None = Field(description="why the last load or warm-up failed (the old version kept serving)")
    last_error_version: int | None
    last_error_at: datetime | None


class ModelDetail(ModelSummary):
    versions: list[VersionInfo]
    gate_history: list[GateEvent] = Field(description="latest promotions, rejections, rollbacks and failures")
    swap: SwapStatus


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    models: dict[str, Status] = Field(description="status of every production model")
    problems: dict[str, str] = Field(
        default_factory=dict, description="why a model's production version is not served (fallback, failed)"
    )


class Reloaded(BaseModel):
    models: dict[str, Status]
