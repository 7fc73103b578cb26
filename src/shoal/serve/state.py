"""What the routes share, attached to the application as `app.state.shoal`."""

from __future__ import annotations

import os
from dataclasses import dataclass

from fastapi import Request

from shoal.serve.metrics import Metrics
from shoal.serve.pool import ModelPool
from shoal.workspace import Workspace


@dataclass
class ServeState:
    ws: Workspace
    pool: ModelPool
    metrics: Metrics
    token: str | None  # the bearer token, or None when auth is off
    token_env: str
    protect_predict: bool
    max_body_bytes: int

    @classmethod
    def build(cls, ws: Workspace, poll_interval_s: float | None = None) -> ServeState:
        server = ws.fleet.workspace.server
        metrics = Metrics()
        return cls(
            ws=ws,
            pool=ModelPool(ws, metrics, poll_interval_s or server.poll_interval_s),
            metrics=metrics,
            token=os.environ.get(server.token_env) or None,
            token_env=server.token_env,
            protect_predict=server.protect_predict,
            max_body_bytes=server.max_body_bytes,
        )


def get_state(request: Request) -> ServeState:
    return request.app.state.shoal  # type: ignore[no-any-return]
