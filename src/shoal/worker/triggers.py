"""When to retrain: new data (debounced per the model's `retrain` settings) and per-model schedules.

New data from any source (inbox, `shoal ingest`, HTTP, feedback) shows as a dataset version that no job and no
version has yet. It is retrained once `min_new_rows` new rows arrived, or `debounce_seconds` after the latest
new drop. A `schedule` (cron like `0 3 * * *` or an interval like `6h`) retrains, at its times, whatever data
changed since. Triggers only enqueue; the queue's unique key makes several workers enqueue a job once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from croniter import croniter

from shoal.fleet import RetrainSpec
from shoal.registry import Drop, Job
from shoal.registry.database import now
from shoal.registry.jobs import TRAIN, JobQueue
from shoal.worker.logs import emit
from shoal.workspace import Workspace

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def schedule_slot(schedule: str, at: datetime) -> datetime:
    """The latest scheduled time at or before `at` (intervals count from the Unix epoch, in UTC)."""
    match = re.fullmatch(r"(\d+)([smhd])", schedule)
    if match:
        step = int(match[1]) * _UNITS[match[2]]
        return datetime.fromtimestamp(int(at.timestamp()) // step * step, at.tzinfo)
    return croniter(schedule, at + timedelta(microseconds=1)).get_prev(datetime)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Pending:
    """A model's data that no job or version covers yet."""

    dataset_version: str
    new_rows: int
    new_drops: int
    latest: datetime  # when the latest new drop arrived


def data_reason(spec: RetrainSpec, pending: Pending, at: datetime) -> str | None:
    """Why to retrain on `pending` data now, or None to wait for more (the debounce)."""
    rows = f"{pending.new_rows} new row(s) in {pending.new_drops} drop(s)"
    if pending.new_rows >= spec.min_new_rows:
        return f"{rows} (min_new_rows {spec.min_new_rows})"
    waited = (at - pending.latest).total_seconds()
    if waited >= spec.debounce_seconds:
        return f"{rows}, {waited:.0f} s after the last drop (debounce_seconds {spec.debounce_seconds:g})"
    return None


class Triggers:
    """Turns a workspace's data and schedules into queued jobs."""

    def __init__(self, ws: Workspace, queue: JobQueue) -> None:
        self.ws = ws
        self.queue = queue
        self._slots: dict[str, datetime] = {}
        self._waiting: set[str] = set()

    def pending(self, model: str) -> Pending | None:
        """The model's new data, or None when its current dataset version is already queued or trained."""
        registry = self.ws.registry
        if model not in registry.model_names():
            return None
        drops = registry.drops(model)
        if not drops:
            return None
        dataset_version = registry.dataset_version(model, drops)
        jobs = self.queue.jobs(model)
        versions = registry.versions(model)
        if any(j.dataset_version == dataset_version and j.kind == TRAIN for j in jobs) or any(
            v.dataset_version == dataset_version for v in versions
        ):
            return None
        return _new_data(dataset_version, drops, jobs, [v.created_at for v in versions])

    def check(self, model: str, *, at: datetime | None = None) -> Job | None:
        """Enqueue a job for `model` if its data or its schedule asks for one; the job, if one was queued."""
        at = at or now()
        spec = self.ws.model(model).retrain
        scheduled = self._schedule_due(model, spec, at)
        if not spec.on_new_data and not scheduled:
            return None
        pending = self.pending(model)
        if pending is None:
            if scheduled:
                emit("schedule_skipped", model=model, schedule=spec.schedule, why="no new data since the last job")
            return None
        reason = f"schedule {spec.schedule!r}: {pending.new_rows} new row(s)" if scheduled else None
        reason = reason or data_reason(spec, pending, at)
        if reason is None:
            if model not in self._waiting:
                emit("debounce_waiting", model=model, new_rows=pending.new_rows, dataset=pending.dataset_version)
                self._waiting.add(model)
            return None
        self._waiting.discard(model)
        return self.enqueue(model, pending.dataset_version, reason)

    def enqueue(self, model: str, dataset_version: str, reason: str, *, retry_failed: bool = False) -> Job:
        job, created = self.queue.enqueue(model, TRAIN, dataset_version, reason, retry_failed=retry_failed)
        emit("job_queued" if created else "job_exists", model=model, job=job.id, status=job.status, reason=reason)
        return job

    def _schedule_due(self, model: str, spec: RetrainSpec, at: datetime) -> bool:
        """True once per scheduled time; a worker starting between two times waits for the next one."""
        if spec.schedule is None:
            return False
        slot = schedule_slot(spec.schedule, at)
        last = self._slots.setdefault(model, slot)
        self._slots[model] = slot
        return slot > last


def _new_data(dataset_version: str, drops: list[Drop], jobs: list[Job], trained: list[datetime]) -> Pending:
    """Drops that arrived after the latest job was queued (or, with no job, after the latest version)."""
    marks = [j.created_at for j in jobs] or trained
    baseline = max(marks) if marks else None
    new = [d for d in drops if baseline is None or d.created_at > baseline]
    latest = max(d.created_at for d in new or drops)
    return Pending(dataset_version, sum(d.n_rows for d in new), len(new), latest)
