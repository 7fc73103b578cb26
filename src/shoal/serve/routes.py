"""Every route but predict: models and their status, health, readiness, metrics, and reload."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from shoal.evaluate.live import live_accuracy
from shoal.llm.answerer import LLMAnswerer
from shoal.monitor import DRIFT_EVENT
from shoal.registry import PRODUCTION, Event, Version
from shoal.serve.auth import require_token
from shoal.serve.errors import unavailable
from shoal.serve.metrics import CONTENT_TYPE
from shoal.serve.pool import Slot
from shoal.serve.predict import not_served
from shoal.serve.redact import without_paths
from shoal.serve.schemas import (
    UNAUTHORIZED,
    ErrorResponse,
    GateEvent,
    GateFigures,
    Health,
    KeyMetrics,
    LLMTier,
    ModelDetail,
    ModelList,
    ModelSummary,
    Readiness,
    Reloaded,
    SwapStatus,
    VersionInfo,
)
from shoal.serve.state import get_state
from shoal.workspace import Workspace

GATE_KINDS = ("promoted", "rejected", "rolled_back", "failed", "fallback")
GATE_HISTORY = 50
NOT_FOUND = {404: {"model": ErrorResponse, "description": "no such model is served"}}

models = APIRouter(tags=["models"])
operations = APIRouter(tags=["operations"])


def key_metrics(version: Version) -> KeyMetrics:
    m = version.metrics
    return KeyMetrics(
        metric=m.metric,
        value=_finite(m.value),
        ci=list(m.ci) if m.ci else None,
        accuracy=m.scores.get("accuracy"),
        macro_f1=m.scores.get("macro_f1"),
        p95_ms_batch1=m.profile.p95_ms_batch1,
        throughput_per_s=m.profile.throughput_per_s,
        cost_per_million=m.profile.cost_per_million,
    )


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def gate_figures(event: Event) -> GateFigures | None:
    """The paired test a gate decision recorded in its event (None for a decision not made by the gate)."""
    found = event.payload.get("decision")
    if not isinstance(found, dict):
        return None
    return GateFigures(
        metric=str(found.get("metric", "")),
        delta=_finite(found.get("delta")),
        ci=[_finite(bound) for bound in found.get("ci") or []],
        p_value=_finite(found.get("p_value")),
        test=str(found.get("test", "")),
    )


def gate_events(ws: Workspace, name: str, limit: int = GATE_HISTORY) -> list[GateEvent]:
    """The model's latest promotions, rejections, rollbacks and failures, oldest first, with the gate's figures."""
    return [
        GateEvent(
            kind=e.kind,
            version=e.version,
            message=without_paths(e.message, ws.root),
            at=e.at,
            decision=gate_figures(e),
        )
        for e in ws.registry.events(name, kind=GATE_KINDS, limit=limit, latest=True)
    ]


def llm_tier(ws: Workspace, slot: Slot) -> LLMTier | None:
    """The slot's LLM and its cost, when it has one (`shoal.coldstart.llm_tier`: the LLM as answerer or fallback)."""
    from shoal.coldstart import llm_tier as tier

    current = slot.current
    labels = current.labels if current is not None and not isinstance(current.predictor, LLMAnswerer) else None
    found = tier(ws, slot.name, labels=labels)
    return LLMTier(**found) if found is not None else None


def summary(slot: Slot, llm: LLMTier | None = None) -> dict[str, Any]:
    current = slot.current
    return dict(
        llm=llm,
        name=slot.name,
        task=slot.task,
        production_version=slot.production,
        serving_version=current.number if current else None,
        status=slot.status,
        problem=slot.problem,
        metrics=key_metrics(current.version) if current else None,
    )


async def _slot(request: Request, name: str) -> Slot:
    state = get_state(request)
    slot = state.pool.slots.get(name)
    if slot is None:
        raise await not_served(state, name)
    return slot


@models.get("/v1/models", summary="List served models")
async def list_models(request: Request) -> ModelList:
    """Every served model with its production version and that version's key metrics."""
    state = get_state(request)
    slots = [slot for _, slot in sorted(state.pool.slots.items())]
    tiers = await asyncio.gather(*(asyncio.to_thread(llm_tier, state.ws, slot) for slot in slots))
    return ModelList(models=[ModelSummary(**summary(slot, llm)) for slot, llm in zip(slots, tiers, strict=True)])


@models.get("/v1/models/{name}", summary="Describe a served model", responses=NOT_FOUND)
async def describe_model(name: str, request: Request) -> ModelDetail:
    """A model's versions, gate history, and the load/swap status of this server process. Paths in messages are
    relative to the workspace (or only a file's name when outside it)."""
    slot = await _slot(request, name)
    ws = get_state(request).ws
    registry = ws.registry
    versions, events = await asyncio.gather(
        asyncio.to_thread(registry.versions, name),
        asyncio.to_thread(gate_events, ws, name),
    )
    production = await asyncio.to_thread(registry.alias, name, PRODUCTION)
    live = await asyncio.to_thread(live_accuracy, ws, name, request.app.state.prediction_log)
    llm = await asyncio.to_thread(llm_tier, ws, slot)
    serving = slot.current.number if slot.current else None
    return ModelDetail(
        **summary(slot, llm),
        versions=[
            VersionInfo(
                number=v.number,
                family=v.family,
                created_at=v.created_at,
                metric=v.metrics.metric,
                value=_finite(v.metrics.value),
                production=v.number == production,
                serving=v.number == serving,
                feedback_count=live.get(v.number, (0, 0.0))[0],
                live_accuracy=live[v.number][1] if v.number in live else None,
            )
            for v in versions
        ],
        gate_history=events,
        swap=SwapStatus(
            loaded_at=slot.current.loaded_at if slot.current else None,
            swaps=slot.swaps,
            last_error=without_paths(slot.last_error, ws.root) if slot.last_error is not None else None,
            last_error_version=slot.last_error_version,
            last_error_at=slot.last_error_at,
        ),
    )


@operations.get("/healthz", summary="Liveness")
async def healthz() -> Health:
    """The process is up and answering."""
    return Health(status="ok")


@operations.get(
    "/readyz",
    summary="Readiness",
    responses={503: {"model": Readiness, "description": "a production model is not loaded and warmed yet"}},
    response_model_exclude_defaults=True,  # `problems` only when there are some
)
async def readyz(request: Request, response: Response) -> Readiness:
    """200 when every production model serves a loaded and warmed version, 503 (same body) otherwise. A model
    serving an earlier version because its production version failed to load is `fallback` (ready, with the
    reason in `problems`); one with no version that loads is `failed` (not ready)."""
    pool = get_state(request).pool
    ready = pool.ready
    if not ready:
        response.status_code = 503
        response.headers["Retry-After"] = "1"
    problems = {name: slot.problem for name, slot in sorted(pool.slots.items()) if slot.problem}
    return Readiness(ready=ready, models=pool.statuses(), problems=problems)


@operations.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    """Per model and version: requests by code, latency, queue wait, batch sizes, flushes, loads, live accuracy
    from feedback, and the alerts the worker's drift checks raised."""
    state = get_state(request)
    log = request.app.state.prediction_log
    for name in list(state.pool.slots):
        live = await asyncio.to_thread(live_accuracy, state.ws, name, log)
        for version, (count, accuracy) in live.items():
            state.metrics.feedback.set((name, str(version)), count)
            state.metrics.live_accuracy.set((name, str(version)), accuracy)
    alerts = await asyncio.to_thread(state.ws.registry.count_events, DRIFT_EVENT)
    for name in state.pool.slots:
        state.metrics.alerts.set((name,), alerts.get(name, 0))
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


@operations.post(
    "/v1/reload",
    summary="Check the registry now",
    dependencies=[Depends(require_token)],
    responses={**UNAUTHORIZED, 503: {"model": ErrorResponse, "description": "the registry cannot be read"}},
)
async def reload(request: Request) -> Reloaded:
    """Load changed production versions now, retrying versions that failed to load before."""
    pool = get_state(request).pool
    try:
        await pool.refresh(retry_failed=True)
    except Exception as error:
        raise unavailable("registry_unavailable", f"cannot read the registry ({type(error).__name__}); retry") from None
    return Reloaded(models=pool.statuses())
