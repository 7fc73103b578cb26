"""The FastAPI application of `shoal serve`, built by `create_app(ws)`.

Routers are included here; a new group of endpoints is one module with an `APIRouter` and one
`app.include_router(...)` line below. `app_from_env` is the factory uvicorn's worker processes call.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from shoal import __version__
from shoal.registry.prediction_log import PredictionLog
from shoal.serve import errors, lifecycle_routes, pipeline_routes, predict, routes, ui
from shoal.serve.limits import BodyLimit
from shoal.serve.metrics import Metrics
from shoal.serve.state import ServeState
from shoal.workspace import Workspace

WORKSPACE_ENV = "SHOAL_WORKSPACE"

DESCRIPTION = """\
Predictions from every production model of a shoal workspace, with dynamic batching and hot swap of new
production versions. Errors are `{"error": {"code": ..., "message": ...}}`.
"""


class ShoalApp(FastAPI):
    """FastAPI, except that a model's or a pipeline's predict request goes straight to `predict.FastPredict` (set by
    `create_app`); under `shoal serve`'s own HTTP protocol, most of them skip ASGI altogether (`direct`)."""

    fast: predict.FastPredict | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast is not None and scope["type"] == "http":
            route = self.fast.route(scope)
            if route is not None:
                await self.fast(scope, receive, send, *route)
                return
        await super().__call__(scope, receive, send)

    def direct(self, scope: Scope) -> predict.Direct | None:
        """The answer of a request `shoal.serve.protocol` may give without ASGI (`predict.FastPredict.direct`)."""
        return None if self.fast is None else self.fast.direct(scope)


def create_app(ws: Workspace, *, poll_interval_s: float | None = None) -> FastAPI:
    """The server app for `ws`; models load in the background once it starts (see `GET /readyz`)."""
    state = ServeState.build(ws, poll_interval_s)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.pool.start()
        try:
            yield
        finally:
            await state.pool.stop()
            app.state.prediction_log.close()

    app = ShoalApp(title="shoal", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.shoal = state
    app.state.prediction_log = ws.prediction_log()
    state.metrics.gauges.append(lambda metrics: _sample_log(metrics, app.state.prediction_log))
    errors.install(app)
    app.add_middleware(BodyLimit, max_body_bytes=state.max_body_bytes)
    app.add_middleware(errors.CatchAll)  # added last: the outermost, so it sees what escapes every other layer
    app.include_router(predict.router(protect=state.protect_predict))
    app.fast = predict.FastPredict(app, state, predict.endpoints(), pipeline_routes.respond)
    app.include_router(routes.models)
    app.include_router(routes.operations)
    app.include_router(lifecycle_routes.router)
    app.include_router(pipeline_routes.router(protect=state.protect_predict))
    ui.install(app)
    return app


def _sample_log(metrics: Metrics, log: PredictionLog) -> None:
    for reason, count in log.dropped.items():
        metrics.log_dropped.set((reason,), count)
    metrics.log_buffered.set((), log.buffered)


def app_from_env() -> FastAPI:
    """The app for the workspace named by $SHOAL_WORKSPACE (what `shoal serve` starts in each worker)."""
    root = os.environ.get(WORKSPACE_ENV)
    if not root:
        raise RuntimeError(f"set {WORKSPACE_ENV} to the workspace folder, or start the server with 'shoal serve'")
    return create_app(Workspace(root))
