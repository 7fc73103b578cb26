"""`shoal serve`: answer every production model of the workspace over HTTP."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.markup import escape

from shoal.cli.common import AddressOption, WorkspaceOption, console, errors, open_workspace

if TYPE_CHECKING:
    from shoal.workspace import Workspace

LOOPBACK = ("127.0.0.1", "localhost", "::1")
LOCAL, RAY = "local", "ray"


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes (each loads every model); --backend local only.")
    ] = 1,
    workspace: WorkspaceOption = ".",
    log_json: Annotated[bool, typer.Option("--log-json", help="Log one JSON object per line.")] = False,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request (slower).")] = False,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="local: this machine's server processes (uvicorn); ray: replicas of the same app on a Ray cluster "
            "behind Ray Serve's HTTP proxy, which listens on --host/--port (pip install 'shoal\\[ray]'; needs a "
            "PostgreSQL registry and shared artifacts). Ctrl-C removes what it deployed.",
        ),
    ] = LOCAL,
    address: AddressOption = None,
    replicas: Annotated[
        int, typer.Option(min=1, help="Ray Serve replicas, one CPU each, each loads every model; --backend ray only.")
    ] = 1,
    max_replicas: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Above --replicas: Ray Serve adds replicas up to this many while the replicas hold more than "
            "--target-ongoing-requests requests each, and removes them when the load falls; --backend ray only.",
        ),
    ] = None,
    target_ongoing_requests: Annotated[
        int, typer.Option(min=1, help="Autoscaling's target of requests in one replica at once; --backend ray only.")
    ] = 32,
    proxy_every_node: Annotated[
        bool,
        typer.Option(
            "--proxy-every-node",
            help="Run Ray Serve's HTTP proxy on every node with a replica (default: the head node's only); "
            "--backend ray only.",
        ),
    ] = False,
) -> None:
    """Serve predictions from every production model, with batching and hot swap of new versions."""
    ws = open_workspace(workspace)
    server = ws.fleet.workspace.server  # a broken fleet file fails here, before any worker starts
    if host not in LOOPBACK and not os.environ.get(server.token_env):
        logging.getLogger("shoal.serve").warning(
            "listening on %s without a token: set $%s to protect the endpoints that change state",
            host,
            server.token_env,
        )
    if backend == RAY:
        if workers != 1:
            raise typer.BadParameter("--workers is for --backend local; use --replicas with --backend ray")
        if max_replicas is not None and max_replicas < replicas:
            raise typer.BadParameter(f"--max-replicas ({max_replicas}) is below --replicas ({replicas})")
        _serve_on_ray(
            ws,
            address=address,
            host=host,
            port=port,
            replicas=replicas,
            every_node=proxy_every_node,
            max_replicas=max_replicas,
            target_ongoing_requests=target_ongoing_requests,
        )
        return
    if backend != LOCAL:
        raise typer.BadParameter(f"--backend is {LOCAL} or {RAY}, not {backend!r}")
    if address is not None or replicas != 1 or proxy_every_node or max_replicas is not None:
        raise typer.BadParameter("--address, --replicas, --max-replicas and --proxy-every-node are for --backend ray")
    import uvicorn

    from shoal.serve.app import WORKSPACE_ENV
    from shoal.serve.logs import log_config

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


def _serve_on_ray(ws: Workspace, **options: Any) -> None:
    """`RayServeOptions(**options)` deployed until Ctrl-C."""
    try:
        from shoal.serve.ray_backend import RayServeError, RayServeOptions, run_until_stopped
    except ImportError as error:
        _fail(f"--backend ray needs Ray Serve: pip install 'shoal[ray]' ({error})")
    try:
        announce = lambda url: console.print(f"serving on Ray Serve at {url} (Ctrl-C to stop)")  # noqa: E731
        run_until_stopped(ws, RayServeOptions(**options), announce)
    except RayServeError as error:
        _fail(str(error))
    console.print("stopped: the Serve application is removed")


def _fail(message: str) -> NoReturn:
    errors.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False)
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(serve)
