"""`shoal worker`, `shoal retrain`, `shoal jobs`: continuous training and its job queue."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from shoal.cli.common import (
    AddressOption,
    ExecutorOption,
    JsonOption,
    WorkspaceOption,
    console,
    open_workspace,
    print_json,
)
from shoal.train.errors import TrainError

if TYPE_CHECKING:
    from shoal.registry import Job
    from shoal.registry.jobs import JobQueue


def worker(
    workspace: WorkspaceOption = ".",
    poll: Annotated[float, typer.Option(help="Seconds between looks at inboxes, data and the queue.", min=0.1)] = 2.0,
    lease: Annotated[
        float, typer.Option(help="Seconds a job stays claimed without a heartbeat (renewed every third).", min=1)
    ] = 60.0,
    once: Annotated[bool, typer.Option("--once", help="Handle what is pending, then exit.")] = False,
    log_json: Annotated[bool, typer.Option("--log-json", help="Log one JSON object per line.")] = False,
    executor: ExecutorOption = "local",
    address: AddressOption = None,
) -> None:
    """Watch every model's inbox and data, queue retrains when their triggers fire, and run queued jobs.
    Run as many workers as you like against one registry; Ctrl-C or SIGTERM stops cleanly."""
    from shoal.worker.logs import configure
    from shoal.worker.runner import Worker

    configure(as_json=log_json)
    ws = open_workspace(workspace)
    ws.fleet  # noqa: B018  (a broken shoal.yaml fails here, before the loop starts)
    Worker(ws, poll_seconds=poll, lease_seconds=lease, executor=executor, address=address).run(once=once)


def retrain(
    model: Annotated[str, typer.Argument(help="Model to retrain on its current data.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until a worker has run the job.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most.")] = 3600,
    workspace: WorkspaceOption = ".",
) -> None:
    """Queue a retrain of MODEL (a running `shoal worker` runs it) and print the job id."""
    from shoal.registry.jobs import DONE, QUEUED, RUNNING, TRAIN, JobQueue

    ws = open_workspace(workspace)
    ws.model(model)
    registry = ws.registry
    drops = registry.drops(model) if model in registry.model_names() else []
    if not drops:
        raise TrainError(f"model {model!r} has no data; add some with 'shoal ingest {model} FILE'")
    queue = JobQueue(registry)
    dataset = registry.dataset_version(model, drops)
    job, created = queue.enqueue(model, TRAIN, dataset, "manual: shoal retrain", retry_failed=True)
    if created:
        console.print(f"job {job.id} queued: retrain {model} on dataset {dataset}", highlight=False)
    else:
        console.print(f"job {job.id} for dataset {dataset} is already {job.status}", highlight=False)
    if not wait:
        if job.status in (QUEUED, RUNNING):
            console.print("a running 'shoal worker' will run it; follow it with 'shoal history " + model + "'")
        return
    finished = _wait(queue, job, timeout)
    console.print(f"job {finished.id} {finished.status}" + (f": {finished.error}" if finished.error else ""))
    if finished.status != DONE:
        raise typer.Exit(1)


def _wait(queue: JobQueue, job: Job, timeout: float) -> Job:
    from shoal.registry.jobs import QUEUED, RUNNING

    deadline = time.monotonic() + timeout
    while job.status in (QUEUED, RUNNING):
        if time.monotonic() > deadline:
            console.print(f"job {job.id} is still {job.status} after {timeout:g} s; is a 'shoal worker' running?")
            raise typer.Exit(1)
        time.sleep(0.5)
        job = queue.job(job.id)
    return job


def jobs(
    model: Annotated[str | None, typer.Argument(help="Only this model's jobs.")] = None,
    limit: Annotated[int, typer.Option(help="How many of the latest jobs.")] = 30,
    workspace: WorkspaceOption = ".",
    as_json: JsonOption = False,
) -> None:
    """List retrain jobs: status, lease holder, attempts, errors."""
    from shoal.registry.jobs import JobQueue

    found = JobQueue(open_workspace(workspace).registry).jobs(model)[-limit:]
    if as_json:
        print_json([j.__dict__ for j in found])
        return
    table = Table("job", "model", "dataset", "status", "worker", "attempts", "reason", "error")
    for j in found:
        table.add_row(
            str(j.id),
            j.model,
            j.dataset_version,
            j.status,
            j.lease_owner or "",
            str(j.attempts),
            j.reason,
            j.error or "",
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command()(retrain)
    app.command()(jobs)
