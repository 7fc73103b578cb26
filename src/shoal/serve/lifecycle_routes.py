"""The lifecycle over HTTP: send data, send feedback on predictions, read a model's history.

`POST /v1/models/{name}/data` validates and stores rows as a data drop (what `shoal ingest` does for a file);
`POST /v1/models/{name}/feedback` joins a label to a logged prediction (the worker turns feedback into data);
`GET /v1/models/{name}/history` lists the model's events and jobs; `POST /v1/models/{name}/promote` and
`POST /v1/models/{name}/rollback` move its production version by hand (as `shoal promote` and `shoal rollback`). The
routes are sync: FastAPI runs them in
its thread pool, so ingestion never blocks the event loop that answers predictions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse, Response

from shoal.data.errors import DropRejected
from shoal.data.split_mode import SplitMode
from shoal.fleet import FleetError, ModelSpec
from shoal.monitor import CHECK_EVENT, DRIFT_EVENT
from shoal.registry import ArtifactError, Event, RegistryError
from shoal.registry.jobs import JobQueue
from shoal.registry.prediction_log import AlreadyLabelled, FeedbackError, NotLogged
from shoal.serve.auth import require_token
from shoal.serve.bodies import BODY_ERRORS, JsonRoute
from shoal.serve.errors import ServeError
from shoal.serve.redact import without_paths
from shoal.serve.schemas import UNAUTHORIZED, ErrorResponse
from shoal.serve.state import get_state
from shoal.workspace import Workspace

router = APIRouter(tags=["lifecycle"], route_class=JsonRoute)

NO_MODEL = {404: {"model": ErrorResponse, "description": "no such model in the fleet"}}
STORE_FULL = {507: {"model": ErrorResponse, "description": "the store's disk is full: nothing was stored; retry later"}}


class DataRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: list[dict[str, Any]] = Field(
        min_length=1, description="rows with the model's text and label columns (default 'text' and 'label')"
    )
    split: SplitMode = Field("auto", description="train, test, or auto (a share by hash of the text goes to test)")


class DataResponse(BaseModel):
    model: str
    drop: str = Field(description="content hash of the stored drop")
    created: bool = Field(description="false when the same rows were already stored")
    n_rows: int
    n_train: int
    n_test: int
    dataset_version: str
    warnings: list[str]


class Problem(BaseModel):
    row: int | None = Field(description="1-based position of the row in 'rows' (null: the drop as a whole)")
    reason: str


class RejectedBody(BaseModel):
    code: str = Field(description="drop_rejected, or invalid_request for a body that is not the documented JSON")
    message: str
    source: str | None = Field(None, description="where the refused rows came from (with drop_rejected)")
    problems: list[Problem] = Field(default_factory=list, description="every refused row (with drop_rejected)")


class Rejected(BaseModel):
    error: RejectedBody


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=128, description="the request_id a predict response returned")
    label: str = Field(min_length=1, description="the correct label")
    index: int | None = Field(
        None,
        ge=0,
        le=2**31 - 1,  # documented: a larger number is not read as an integer at all (the schema promised it was)
        description="which input of the request (needed when it had several)",
    )


class FeedbackResponse(BaseModel):
    model: str
    request_id: str
    index: int
    version: int = Field(description="the version that answered the request")
    label: str
    predicted: str | None = Field(description="what that version answered, when the server logged it")


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=2**31 - 1, description="the version to put in production")
    reason: str = Field(
        "manual promotion over HTTP",
        min_length=1,
        max_length=500,
        pattern="^[^\x00]*$",
        description="why (recorded in the history)",
    )


class AliasMoved(BaseModel):
    model: str
    version: int = Field(description="the production version now (servers load it at their next registry poll)")
    previous: int | None = Field(description="the production version before")


class HistoryEvent(BaseModel):
    id: int
    kind: str
    version: int | None
    message: str
    at: datetime | None


class JobInfo(BaseModel):
    id: int
    kind: str
    dataset_version: str
    status: str = Field(description="queued, running, done, failed or superseded")
    reason: str
    worker: str | None
    attempts: int
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class History(BaseModel):
    model: str
    events: list[HistoryEvent] = Field(description="oldest first: drops, jobs, trainings, gate decisions, rollbacks")
    jobs: list[JobInfo]


class Alert(BaseModel):
    id: int
    kind: str = Field(
        description="`drift` (an alert of the worker's check of the newest served predictions) or "
        "`drift_check` (any check, with `checks`)"
    )
    version: int | None = Field(description="the production version whose traffic was checked")
    message: str = Field(description="which tests fired, and what was done (a retrain queued, or why not)")
    tests: list[dict[str, Any]] = Field(description="every test of the check: test, statistic, p_value, fired")
    at: datetime | None


class Alerts(BaseModel):
    model: str
    alerts: list[Alert] = Field(description="oldest first")


def _spec(ws: Workspace, name: str) -> ModelSpec:
    try:
        return ws.model(name)
    except FleetError:
        raise ServeError(404, "not_found", f"no model {name!r} in the fleet; add it to shoal.yaml first") from None


#: what a client does about a refusal (the CLI's --skip-invalid does not exist over HTTP)
RESEND_ROWS = "Fix the rows listed and send the request again; nothing of it was stored."
RESEND_LABEL = "Send a label the model's data allows (its declared labels, a non-empty text)."


def _rejected(error: DropRejected, next_step: str) -> JSONResponse:
    error.next_step = next_step
    problems = [Problem(row=p.line, reason=p.reason) for p in error.problems]
    body = Rejected(
        error=RejectedBody(code="drop_rejected", message=str(error), source=error.source, problems=problems)
    )
    return JSONResponse(body.model_dump(), status_code=422)


@router.post(
    "/v1/models/{name}/data",
    summary="Send data",
    response_model=DataResponse,
    responses={
        **UNAUTHORIZED,
        **NO_MODEL,
        **BODY_ERRORS,
        **STORE_FULL,
        422: {"model": Rejected, "description": "the rows were refused whole, or the body is not UTF-8 JSON"},
    },
    dependencies=[Depends(require_token)],
)
def send_data(name: str, body: DataRequest, request: Request) -> DataResponse | Response:
    """Validate rows and store them as an immutable data drop; a running worker retrains per the model's
    `retrain` settings. A drop is refused whole (422, with each problem's row and reason) or stored whole."""
    ws = get_state(request).ws
    _spec(ws, name)
    from shoal.data.ingest import ingest_rows  # pandas and the task kinds: imported by the first drop sent

    try:
        result = ingest_rows(ws, name, body.rows, split=body.split)
    except DropRejected as error:
        return _rejected(error, RESEND_ROWS)
    drop = result.drop
    return DataResponse(
        model=name,
        drop=drop.hash,
        created=result.created,
        n_rows=drop.n_rows,
        n_train=drop.n_train,
        n_test=drop.n_test,
        dataset_version=ws.registry.dataset_version(name),
        warnings=result.warnings,
    )


@router.post(
    "/v1/models/{name}/feedback",
    summary="Send feedback",
    response_model=FeedbackResponse,
    responses={
        **UNAUTHORIZED,
        **BODY_ERRORS,
        404: {"model": ErrorResponse, "description": "no such model, or no logged prediction with that request id"},
        409: {"model": ErrorResponse, "description": "that prediction already has feedback"},
        422: {"model": Rejected, "description": "the label is not allowed, or 'index' is missing or out of range"},
    },
    dependencies=[Depends(require_token)],
)
def send_feedback(name: str, body: FeedbackRequest, request: Request) -> FeedbackResponse | Response:
    """Give the correct label of a prediction, named by its request id. The label is checked like any data;
    the worker adds joined feedback to the model's data, and it scores each version's live accuracy."""
    ws = get_state(request).ws
    _spec(ws, name)
    from shoal.data.feedback import add_feedback  # like ingest_rows

    try:
        joined = add_feedback(ws, request.app.state.prediction_log, name, body.request_id, body.label, body.index)
    except DropRejected as error:
        return _rejected(error, RESEND_LABEL)
    except NotLogged as error:
        raise ServeError(404, "not_found", str(error)) from None
    except AlreadyLabelled as error:
        raise ServeError(409, "conflict", str(error)) from None
    except FeedbackError as error:
        raise ServeError(422, "invalid_request", str(error)) from None
    return FeedbackResponse(
        model=name,
        request_id=joined.request_id,
        index=joined.position,
        version=joined.version,
        label=joined.label,
        predicted=joined.predicted,
    )


def _events(request: Request, name: str, limit: int, kind: str | None = None) -> tuple[Workspace, list[Event]]:
    """The served workspace and the model's latest `limit` events (of one kind, if given), oldest first; 404 for a
    model the fleet file does not name."""
    ws = get_state(request).ws
    _spec(ws, name)
    return ws, ws.registry.events(name, limit=limit, kind=kind, latest=True)


@router.get("/v1/models/{name}/alerts", summary="A model's alerts", responses=NO_MODEL)
def alerts(
    name: str,
    request: Request,
    limit: int = Query(100, ge=1, le=5000, description="how many of the latest alerts"),
    checks: Annotated[
        bool, Query(description="every check with a verdict (kind `drift_check`), not only the alerts")
    ] = False,
) -> Alerts:
    """The model's alerts: each drift the worker found in its newest served predictions (set `monitor:` on the
    model in shoal.yaml and run `shoal worker`), with every test's p-value and what was done about it; with
    `checks`, every check, alert or not (the estimated and live accuracy over time are among its tests)."""
    _, found = _events(request, name, limit, CHECK_EVENT if checks else DRIFT_EVENT)
    return Alerts(
        model=name,
        alerts=[
            Alert(id=e.id, kind=e.kind, version=e.version, message=e.message, tests=e.payload.get("tests", []), at=e.at)
            for e in found
        ],
    )


ALIAS_ERRORS = {
    **UNAUTHORIZED,
    **NO_MODEL,
    409: {"model": ErrorResponse, "description": "no such version, none to go back to, or it fails to verify"},
}


def _refused(error: RegistryError | ArtifactError, ws: Workspace) -> ServeError:
    return ServeError(409, "conflict", without_paths(str(error), ws.root))


@router.post(
    "/v1/models/{name}/promote",
    summary="Promote a version",
    responses={**ALIAS_ERRORS, **BODY_ERRORS},
    dependencies=[Depends(require_token)],
)
def promote(name: str, body: PromoteRequest, request: Request) -> AliasMoved:
    """Put a version in production by hand, as `shoal promote` does (recorded as manual, with the reason)."""
    ws = get_state(request).ws
    _spec(ws, name)
    from shoal.pipelines.history import promote_by_hand  # judges the pipelines with the model: loaded on first use

    try:
        previous = promote_by_hand(ws, name, body.version, reason=body.reason)
    except (RegistryError, ArtifactError) as error:
        raise _refused(error, ws) from None
    return AliasMoved(model=name, version=body.version, previous=previous)


@router.post(
    "/v1/models/{name}/rollback",
    summary="Roll back",
    responses=ALIAS_ERRORS,
    dependencies=[Depends(require_token)],
)
def rollback(name: str, request: Request) -> AliasMoved:
    """Put the previous production version back, as `shoal rollback` does."""
    ws = get_state(request).ws
    _spec(ws, name)
    from shoal.pipelines.history import roll_back

    previous = ws.registry.alias(name)
    try:
        version = roll_back(ws, name)
    except (RegistryError, ArtifactError) as error:
        raise _refused(error, ws) from None
    return AliasMoved(model=name, version=version, previous=previous)


@router.get("/v1/models/{name}/history", summary="A model's history", responses=NO_MODEL)
def history(
    name: str,
    request: Request,
    limit: int = Query(200, ge=1, le=5000, description="how many of the latest events"),
) -> History:
    """Every event of the model (data drops, jobs, trainings, gate decisions with reasons, rollbacks, failures)
    and its retrain jobs. A refused drop changes nothing, so it is not here: its 422 answer says why. Paths in
    messages are relative to the workspace (or only a file's name when outside it): this route needs no token."""
    ws, events = _events(request, name, limit)
    registry, root = ws.registry, ws.root
    if name not in registry.model_names():
        return History(model=name, events=[], jobs=[])
    return History(
        model=name,
        events=[
            HistoryEvent(id=e.id, kind=e.kind, version=e.version, message=without_paths(e.message, root), at=e.at)
            for e in events
        ],
        jobs=[
            JobInfo(
                id=j.id,
                kind=j.kind,
                dataset_version=j.dataset_version,
                status=j.status,
                reason=without_paths(j.reason, root),
                worker=j.lease_owner,
                attempts=j.attempts,
                error=without_paths(j.error, root) if j.error is not None else None,
                created_at=j.created_at,
                finished_at=j.finished_at,
            )
            for j in JobQueue(registry).jobs(name)
        ],
    )
