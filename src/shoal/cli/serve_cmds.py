"""`shoal serve`: answer every production model of the workspace over HTTP."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from shoal.cli.common import WorkspaceOption, open_workspace

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes (each loads every model).")] = 1,
    workspace: WorkspaceOption = ".",
    log_json: Annotated[bool, typer.Option("--log-json", help="Log one JSON object per line.")] = False,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request (slower).")] = False,
) -> None:
    """Serve predictions from every production model, with batching and hot swap of new versions."""
    import uvicorn

    from shoal.serve.app import WORKSPACE_ENV
    from shoal.serve.logs import log_config

    ws = open_workspace(workspace)
    server = ws.fleet.workspace.server  # a broken fleet file fails here, before any worker starts
    if host not in LOOPBACK and not os.environ.get(server.token_env):
        logging.getLogger("shoal.serve").warning(
            "listening on %s without a token: set $%s to protect the endpoints that change state",
            host,
            server.token_env,
        )
    os.environ[WORKSPACE_ENV] = str(ws.root)
    uvicorn.run(
        "shoal.serve.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="shoal.serve.protocol:CorkedHttpTools",
        ws="none",  # no WebSocket routes; and the corked transport is for HTTP answers only
        log_config=log_config(log_json),
        access_log=access_log,
        server_header=False,
        backlog=4096,
    )


def register(app: typer.Typer) -> None:
    app.command()(serve)
