"""The dashboard at `/ui` of `shoal serve`: the fleet, each model, each pipeline and the event log.

The pages are rendered on the server (`pages`) from what the JSON routes answer (the route functions are called
in process), and a small script (`static/app.js`, served from the package) polls each page for a fresh `<main>`
every 2 s, so a promotion made by the CLI shows without a reload. Read-only unless the browser sends the token:
then the page has promote and roll back buttons, which post to `/v1/models/{name}/promote` and `/rollback` with it.
The predict routes never pass here (`predict.FastPredict` answers them before routing).
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from shoal.registry import ArtifactError
from shoal.serve import lifecycle_routes
from shoal.serve.auth import bearer_token, check_token
from shoal.serve.errors import ServeError
from shoal.serve.metrics import Traffic
from shoal.serve.pipeline_routes import list_pipelines
from shoal.serve.redact import without_paths
from shoal.serve.routes import describe_model, gate_events, list_models
from shoal.serve.state import get_state
from shoal.workspace import Workspace

STATIC = Path(__file__).parent / "static"
ALERTS = 50
CHECKS = 200  # the drift checks drawn over time on a model page
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False)
#: label issues per (workspace, model, version): read from the version's verified artifact, which never changes
_issues: dict[tuple[str, str, int], list[dict[str, Any]]] = {}


_renderers: list[ModuleType] = []


async def _pages() -> ModuleType:
    """The page renderers (`pages`), imported off the event loop when the first page is asked for: they bring the
    selection report's modules (pandas among them), which `shoal serve` does not load to predict."""
    if not _renderers:
        _renderers.append(await asyncio.to_thread(importlib.import_module, "shoal.serve.ui.pages"))
    return _renderers[0]


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/") + "/ui"


def _admin(request: Request) -> bool | None:
    """Whether the request carries the server's token (None: it carries none)."""
    given = bearer_token(request.headers.get("authorization"))
    if given is None:
        return None
    try:
        check_token(get_state(request), given)
    except ServeError:
        return False
    return True


async def _answer(request: Request, title: str, main: str, fragment: bool) -> HTMLResponse:
    page = main if fragment else (await _pages()).page(_base(request), title, main)
    return HTMLResponse(page, headers=HEADERS)


def _label_issues(ws: Workspace, name: str, number: int | None) -> list[dict[str, Any]]:
    if number is None:
        return []
    key = (str(ws.root), name, number)
    if key not in _issues:
        from shoal.report.data import label_issues

        try:
            found = label_issues(ws, name, number)
        except ArtifactError:
            return []  # the model's status says why its version does not verify
        if len(_issues) > 256:
            _issues.clear()
        _issues[key] = found
    return _issues[key]


@router.get("/ui")
async def overview(request: Request, fragment: bool = False) -> HTMLResponse:
    pages = await _pages()
    state = get_state(request)
    listed = (await list_models(request)).models

    def extras() -> dict[str, tuple[Any, dict[str, Any] | None, bool]]:
        found = {}
        for m in listed:
            decisions = gate_events(state.ws, m.name, limit=1)
            alerts = lifecycle_routes.alerts(m.name, request, limit=1).alerts
            monitored = state.ws.model(m.name).monitor is not None
            found[m.name] = (
                decisions[-1] if decisions else None,
                alerts[-1].model_dump() if alerts else None,
                monitored,
            )
        return found

    found = await asyncio.to_thread(extras)
    pipelines = [p.name for p in (await list_pipelines(request)).pipelines]
    main = pages.overview(_base(request), listed, state.metrics.traffic(), found, pipelines, _admin(request))
    return await _answer(request, "fleet", main, fragment)


@router.get("/ui/models/{name}")
async def model_page(name: str, request: Request, fragment: bool = False) -> HTMLResponse:
    pages = await _pages()
    state = get_state(request)
    detail = await describe_model(name, request)

    texts_shown = state.token is None or _admin(request) is True  # label issues quote training texts

    def gather() -> tuple[Any, ...]:
        from shoal.report.data import candidates  # the selection report's figures and Pareto fronts

        alerts = [a.model_dump() for a in lifecycle_routes.alerts(name, request, limit=ALERTS).alerts]
        checks = [a.model_dump() for a in lifecycle_routes.alerts(name, request, limit=CHECKS, checks=True).alerts]
        return (
            candidates(state.ws, name, detail.production_version),
            alerts,
            checks,
            _label_issues(state.ws, name, detail.production_version) if texts_shown else None,
        )

    found, alerts, checks, issues = await asyncio.to_thread(gather)
    traffic = state.metrics.traffic().get(name, Traffic(0, 0, None, None))
    main = pages.model(_base(request), detail, traffic, found, alerts, checks, issues, _admin(request))
    return await _answer(request, name, main, fragment)


@router.get("/ui/pipelines/{name}")
async def pipeline_page(name: str, request: Request, fragment: bool = False) -> HTMLResponse:
    pages = await _pages()
    state = get_state(request)
    found = [p for p in (await list_pipelines(request)).pipelines if p.name == name]
    if not found:
        raise ServeError(404, "not_found", f"no pipeline {name!r} in the fleet; see {_base(request)}")
    production = {m: slot.production for m, slot in state.pool.slots.items()}
    main = pages.pipeline(_base(request), found[0].model_dump(), production, _admin(request))
    return await _answer(request, name, main, fragment)


@router.get("/ui/events")
async def event_log(request: Request, fragment: bool = False) -> HTMLResponse:
    pages = await _pages()
    ws = get_state(request).ws
    found = await asyncio.to_thread(ws.registry.events, limit=pages.EVENT_LOG, latest=True)
    events = [
        {
            "at": ev.at,
            "model": ev.model,
            "kind": ev.kind,
            "version": ev.version,
            "message": without_paths(ev.message, ws.root),
        }
        for ev in found
    ]
    return await _answer(request, "events", pages.events(_base(request), events, _admin(request)), fragment)
