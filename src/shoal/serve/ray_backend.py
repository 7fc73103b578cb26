"""`shoal serve --backend ray`: the fleet on Ray Serve. Imported only when chosen: `pip install 'shoal[ray]'`.

One Serve application (`shoal`, route prefix `/`) with one deployment whose replicas each run shoal's own app,
`create_app(ws)` — its batcher, codecs, errors, metrics, and hot swap by polling the registry — behind Ray Serve's
HTTP proxy: the HTTP API and the OpenAPI are the ones `shoal serve` has. Each replica is a Ray actor declaring one
CPU and loads every production model, as each `shoal serve --workers` process does. Every replica reads the
workspace's fleet file at the same path, the PostgreSQL registry and the shared artifact store (a SQLite registry
is one node's file: refused).
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from types import FrameType
from typing import Any

import ray
from fastapi import FastAPI
from ray import serve
from ray.exceptions import GetTimeoutError, RayActorError
from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE
from ray.serve.config import HTTPOptions, ProxyLocation
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shoal.serve.app import create_app
from shoal.serve.errors import error_response, unavailable
from shoal.serve.state import ServeState
from shoal.workspace import ARTIFACT_CACHE_ENV, ARTIFACTS_ENV, REGISTRY_ENV, Workspace

log = logging.getLogger("shoal.serve")

APP_NAME = "shoal"
DEPLOYMENT = "shoal-replica"
#: requests one replica takes at a time: shoal's batcher queues and batches them (Ray's default, 5, would starve it)
MAX_ONGOING = 1024
#: seconds a replica gets to finish its requests when the application is deleted
SHUTDOWN_S = 10.0
#: seconds Serve's controller gets to stop every replica and proxy when shoal shuts Serve down
SHUTDOWN_WAIT_S = 60.0
#: seconds from Ctrl-C or SIGTERM to the end of the process, the clean-up and Ray's disconnect at exit included
STOP_DEADLINE_S = SHUTDOWN_WAIT_S + 30
#: seconds to reach the Ray head named by --address
CONNECT_S = 5.0
#: autoscaling (`--max-replicas` above `--replicas`): seconds of load averaged, and seconds above target before a
#: replica is added (Ray's defaults, 30 s and 30 s, react slowly for a fleet of small fast models)
LOOK_BACK_S = 10.0
UPSCALE_DELAY_S = 5.0
#: seconds a replica's start-up waits for its first registry poll to load every production version
FIRST_LOAD_S = 600.0
#: Ray Serve's proxies call this (an import path) for middlewares: set for the controller, which starts them
PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = f"{__name__}.proxy_middlewares"


class RayServeError(Exception):
    """Serving on Ray is impossible as asked (the message says what to do)."""


class LoadedFirst:
    """shoal's app whose start-up ends once its first registry poll has loaded (or failed) every production
    version: Ray Serve sends a replica requests as soon as its start-up ends, and a replica started again after a
    crash would otherwise answer 503 `not_ready` until its models are loaded."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        state: ServeState = self.app.state.shoal

        async def after_first_poll(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                with suppress(TimeoutError):  # past it, the replica starts anyway; /readyz says what is loading
                    await asyncio.wait_for(state.pool.first_poll.wait(), FIRST_LOAD_S)
            await send(message)

        await self.app(scope, receive, after_first_poll)


@serve.ingress()
class ShoalReplica:
    """One replica: shoal's app for the workspace at `root` (every production model, kept in step with the
    registry)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def __serve_build_asgi_app__(self) -> ASGIApp:
        return LoadedFirst(create_app(Workspace(self.root)))


class ReplicaLost:
    """In Ray Serve's HTTP proxy: a request whose replica died before it answered gets shoal's 503 with Retry-After
    (another replica, or the one Ray Serve starts again, will answer the retry) instead of Ray's bare 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, receive, watched)
        if not started:  # Ray's proxy answers nothing itself for a replica that died (its server would send 500)
            error = unavailable(
                "replica_unavailable", "the replica answering this request stopped; retry after the Retry-After delay"
            )
            await error_response(error.status, error.code, error.message, error.headers)(scope, receive, send)


def proxy_middlewares() -> list[Middleware]:
    """What Ray Serve's proxy wraps its app in (named by `PROXY_CALLBACK_ENV` in the controller's environment)."""
    return [Middleware(ReplicaLost)]


@dataclass(frozen=True)
class RayServeOptions:
    address: str | None  # the Ray cluster's head, HOST:PORT (None: RAY_ADDRESS, else this node's cluster)
    host: str
    port: int
    replicas: int
    every_node: bool  # a proxy on every node with a replica (else the head node's only)
    max_replicas: int | None = None  # above `replicas`: Ray Serve autoscales between the two on queue length
    target_ongoing_requests: int = 32  # autoscaling's target of requests in a replica at once


def check_workspace(ws: Workspace) -> None:
    """Refuse what the replicas of other nodes could not read: a SQLite registry (one node's file)."""
    if ws.registry_url.startswith("sqlite"):
        raise RayServeError(
            "the registry is a SQLite file, which replicas on other nodes cannot read; put it on PostgreSQL "
            f"(${REGISTRY_ENV} or workspace.registry in the fleet file) and the artifacts on shared storage "
            f"(${ARTIFACTS_ENV}: a shared folder's file:// URL or s3://...)"
        )


def _env(ws: Workspace) -> dict[str, str]:
    """What the replicas need from this environment: the registry, store and cache settings, and the token."""
    names = (REGISTRY_ENV, ARTIFACTS_ENV, ARTIFACT_CACHE_ENV, ws.fleet.workspace.server.token_env)
    return {name: os.environ[name] for name in names if name in os.environ}


def _scaling(options: RayServeOptions) -> dict[str, Any]:
    """A fixed number of replicas, or Ray Serve's autoscaling on requests in the replicas (its queue length)."""
    if options.max_replicas is None or options.max_replicas <= options.replicas:
        return {"num_replicas": options.replicas}
    return {
        "autoscaling_config": {
            "min_replicas": options.replicas,
            "max_replicas": options.max_replicas,
            "target_ongoing_requests": options.target_ongoing_requests,
            "look_back_period_s": LOOK_BACK_S,
            "upscale_delay_s": UPSCALE_DELAY_S,
        }
    }


def application(ws: Workspace, options: RayServeOptions) -> serve.Application:
    """The Serve application: replicas of shoal's app, one CPU each, as many as `options` say."""
    deployment = serve.deployment(
        ShoalReplica,
        name=DEPLOYMENT,
        **_scaling(options),
        max_ongoing_requests=MAX_ONGOING,
        graceful_shutdown_timeout_s=SHUTDOWN_S,
        ray_actor_options={"num_cpus": 1, "runtime_env": {"env_vars": _env(ws)}},
    )
    return deployment.bind(str(ws.root))


def connect(address: str | None) -> None:
    """Join the Ray cluster at `address` (else RAY_ADDRESS, else this node's)."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "auto"
    advice = (
        "start one with 'ray start --head' (and 'ray start --address HEAD:PORT' on each other node), or pass "
        "--address HEAD:PORT"
    )
    host, _, port = address.rpartition(":")
    if host and port.isdigit():  # Ray itself would retry an unreachable head for minutes
        try:
            socket.create_connection((host, int(port)), timeout=CONNECT_S).close()
        except OSError as error:
            raise RayServeError(f"no Ray cluster answers at {address} ({error}); {advice}") from None
    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError) as error:
        raise RayServeError(f"no Ray cluster to serve on ({error}); {advice}") from None


def _running_apps() -> dict[str, Any] | None:
    """The Serve applications of the cluster, or None when Serve does not run there (`serve.status()` would start
    it, with its default HTTP options, so its controller actor is looked up first)."""
    try:
        ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        return None
    return dict(serve.status().applications)


@contextmanager
def deployed(ws: Workspace, options: RayServeOptions) -> Iterator[str]:
    """The fleet running on Ray Serve until the block ends; yields its URL. At the end the application is deleted,
    and Serve shut down when this started it (nothing of ours is left on the cluster)."""
    check_workspace(ws)
    connect(options.address)
    apps = _running_apps()
    if apps is not None and APP_NAME in apps:
        raise RayServeError(
            f"a Serve application named {APP_NAME!r} already runs on this cluster; stop the 'shoal serve --backend "
            "ray' that started it (or 'serve shutdown')"
        )
    cpus = ray.cluster_resources().get("CPU", 0.0)
    if options.replicas > cpus:  # Serve would wait for CPUs forever, saying nothing here
        raise RayServeError(
            f"--replicas {options.replicas} needs {options.replicas} CPUs (one a replica) and the cluster has "
            f"{cpus:g}; start more nodes ('ray start --address HEAD:PORT') or ask for fewer replicas"
        )
    started = apps is None
    try:
        if started:
            location = ProxyLocation.EveryNode if options.every_node else ProxyLocation.HeadOnly
            serve.start(
                proxy_location=location,
                http_options=HTTPOptions(host=options.host, port=options.port),
                controller_options={"runtime_env": {"env_vars": {PROXY_CALLBACK_ENV: PROXY_CALLBACK}}},
            )
        else:
            log.warning(
                "Ray Serve already runs on this cluster, with its own HTTP options (--host/--port are not applied) "
                "and a proxy that answers a request whose replica died with 500 instead of shoal's 503 + Retry-After"
            )
        try:
            serve.run(application(ws, options), name=APP_NAME, route_prefix="/")
        except RuntimeError as error:  # a replica failed to start, or died while the others started
            raise RayServeError(
                f"{error}; the replicas' logs are in the Ray session's logs/serve folder of each node "
                "(/tmp/ray/session_latest by default)"
            ) from None
        yield f"http://{options.host}:{options.port}"
    finally:
        # a second Ctrl-C must not cut the clean-up short
        main = threading.current_thread() is threading.main_thread()  # only there can signals be set
        ignored = {n: signal.signal(n, signal.SIG_IGN) for n in (signal.SIGINT, signal.SIGTERM)} if main else {}
        try:
            if started:
                _shut_serve_down()
            else:
                serve.delete(APP_NAME)
        finally:
            for number, handler in ignored.items():
                signal.signal(number, handler)


def _shut_serve_down() -> None:
    """Ray Serve shut down on the cluster, its controller asked directly with a deadline: `serve.shutdown()` first
    shuts the driver's cached handles down, waiting on each handle's router without a timeout (the suspected cause
    of a CI run's Ctrl-C that did not end the command within 240 s after a replica was killed under load)."""
    with suppress(ValueError):  # no controller: nothing to shut down
        controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        try:
            ray.get(controller.graceful_shutdown.remote(), timeout=SHUTDOWN_WAIT_S)
        except RayActorError:  # it exits once everything of Serve is stopped: the expected end
            pass
        except GetTimeoutError:
            log.warning(
                "Ray Serve did not shut down within %g s; 'serve shutdown' on the cluster ends it", SHUTDOWN_WAIT_S
            )
    serve.context._set_global_client(None)  # the driver forgets the controller (what `serve.shutdown()` ends with)


def run_until_stopped(ws: Workspace, options: RayServeOptions, announce: Callable[[str], None]) -> None:
    """Deploy, call `announce(url)`, and serve until Ctrl-C or SIGTERM (during the deploy too); then remove what was
    deployed."""

    def interrupt(_number: int, _frame: FrameType | None) -> None:
        _end_by_deadline()
        raise KeyboardInterrupt

    connect(options.address)  # first: joining Ray installs its own SIGTERM handler (one that aborts the process,
    # leaving the deployment running), which shoal's replaces
    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        with deployed(ws, options) as url:
            announce(url)
            forever = threading.Event()  # never set: the wait ends with a signal (checked each second, should it
            while not forever.wait(1):  # land on one of Ray's threads)
                pass
    except KeyboardInterrupt:
        pass
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _end_by_deadline() -> None:
    """From now on this process ends within `STOP_DEADLINE_S`, whatever its clean-up or its exit waits on: past it,
    every thread's stack goes to stderr (what it waited on) and the process exits with 1."""

    def watchdog() -> None:
        time.sleep(STOP_DEADLINE_S)
        sys.stderr.write(f"the clean-up did not end within {STOP_DEADLINE_S:g} s; where each thread waits:\n")
        sys.stderr.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os._exit(1)

    threading.Thread(target=watchdog, name="shoal-stop-deadline", daemon=True).start()
