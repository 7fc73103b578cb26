"""The job queue: training jobs as rows of the registry's `jobs` table, held by workers under a lease.

A job is `queued`, then `running` under a lease (owner + expiry) that its worker renews while it works, then
`done` or `failed` (or `superseded` when newer data was queued before it ran). A worker that dies stops renewing;
once the lease expires any worker may claim the job again. At most one job per model runs at a time, and the
unique (model, kind, dataset version) constraint refuses duplicates. Every change of state is written in one
transaction with its event, so the event log and the table never disagree. The row is only a lease: what a job
produces (versions, aliases) becomes visible through the registry's own transactions.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, exists, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from shoal.registry import schema as t
from shoal.registry.database import Registry, RegistryError, _aware, now
from shoal.registry.records import Job

QUEUED, RUNNING, DONE, FAILED, SUPERSEDED = "queued", "running", "done", "failed", "superseded"
TRAIN = "train"
MAX_ATTEMPTS = 3
LEASE_SECONDS = 60.0


class JobQueue:
    """Enqueue, claim, heartbeat and finish jobs; safe for any number of workers on one registry."""

    def __init__(
        self, registry: Registry, *, lease_seconds: float = LEASE_SECONDS, max_attempts: int = MAX_ATTEMPTS
    ) -> None:
        self.registry = registry
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts

    # -- reading ------------------------------------------------------------------------------------
    @staticmethod
    def _query() -> Any:
        return select(t.jobs, t.models.c.name.label("model_name")).join(t.models, t.models.c.id == t.jobs.c.model_id)

    @staticmethod
    def _job(row: Any) -> Job:
        return Job(
            id=row.id,
            model=row.model_name,
            kind=row.kind,
            dataset_version=row.dataset_version,
            status=row.status,
            reason=row.reason,
            lease_owner=row.lease_owner,
            lease_expires=_aware(row.lease_expires),
            attempts=row.attempts,
            error=row.error,
            created_at=_aware(row.created_at),  # type: ignore[arg-type]
            finished_at=_aware(row.finished_at),
        )

    def jobs(self, model: str | None = None) -> list[Job]:
        query = self._query().order_by(t.jobs.c.id)
        if model is not None:
            query = query.where(t.models.c.name == model)
        with self.registry._read() as conn:
            return [self._job(row) for row in conn.execute(query)]

    def job(self, job_id: int) -> Job:
        with self.registry._read() as conn:
            row = conn.execute(self._query().where(t.jobs.c.id == job_id)).first()
        if row is None:
            raise RegistryError(f"there is no job {job_id}; list jobs with 'shoal jobs'")
        return self._job(row)

    def find(self, model: str, kind: str, dataset_version: str) -> Job | None:
        query = self._query().where(
            t.models.c.name == model, t.jobs.c.kind == kind, t.jobs.c.dataset_version == dataset_version
        )
        with self.registry._read() as conn:
            row = conn.execute(query).first()
        return self._job(row) if row else None

    def expired(self) -> list[Job]:
        """Jobs still marked running whose lease ran out: their worker died (or stopped renewing)."""
        query = self._query().where(t.jobs.c.status == RUNNING, t.jobs.c.lease_expires < now()).order_by(t.jobs.c.id)
        with self.registry._read() as conn:
            return [self._job(row) for row in conn.execute(query)]

    # -- writing ------------------------------------------------------------------------------------
    def enqueue(
        self, model: str, kind: str, dataset_version: str, reason: str, *, retry_failed: bool = False
    ) -> tuple[Job, bool]:
        """Queue a job; returns (job, created). A job for the same (model, kind, dataset version) is refused
        and returned instead, except a failed one with `retry_failed`, which is queued again. Older queued jobs
        of the same model and kind are superseded: the new one trains on everything they would have."""
        registry = self.registry
        try:
            with registry._write() as conn:
                model_id = registry._model_id(conn, model, lock=True)
                existing = conn.execute(
                    select(t.jobs.c.id, t.jobs.c.status).where(
                        t.jobs.c.model_id == model_id,
                        t.jobs.c.kind == kind,
                        t.jobs.c.dataset_version == dataset_version,
                    )
                ).first()
                if existing is not None:
                    if not (retry_failed and existing.status == FAILED):
                        return self.job(existing.id), False
                    self._requeue(conn, model_id, existing.id, reason)
                    job_id = existing.id
                else:
                    job_id = self._insert(conn, model_id, kind, dataset_version, reason)
                self._supersede(conn, model_id, kind, job_id)
        except IntegrityError:  # another worker queued the same job between our check and our insert
            found = self.find(model, kind, dataset_version)
            if found is None:
                raise
            return found, False
        return self.job(job_id), True

    def _insert(self, conn: Connection, model_id: int, kind: str, dataset_version: str, reason: str) -> int:
        job_id = conn.execute(
            insert(t.jobs).values(
                model_id=model_id,
                kind=kind,
                dataset_version=dataset_version,
                status=QUEUED,
                reason=reason,
                attempts=0,
                created_at=now(),
            )
        ).inserted_primary_key[0]
        self.registry._event(
            conn,
            model_id,
            "job_queued",
            f"job {job_id} queued ({kind} on dataset {dataset_version}): {reason}",
            payload={"job": job_id, "kind": kind, "dataset_version": dataset_version, "reason": reason},
        )
        return int(job_id)

    def _requeue(self, conn: Connection, model_id: int, job_id: int, reason: str) -> None:
        conn.execute(
            update(t.jobs)
            .where(t.jobs.c.id == job_id)
            .values(status=QUEUED, reason=reason, attempts=0, error=None, finished_at=None, lease_owner=None)
        )
        self.registry._event(
            conn, model_id, "job_queued", f"job {job_id} queued again: {reason}", payload={"job": job_id}
        )

    def _supersede(self, conn: Connection, model_id: int, kind: str, newest: int) -> None:
        older = list(
            conn.execute(
                select(t.jobs.c.id).where(
                    t.jobs.c.model_id == model_id,
                    t.jobs.c.kind == kind,
                    t.jobs.c.status == QUEUED,
                    t.jobs.c.id != newest,
                )
            ).scalars()
        )
        if not older:
            return
        conn.execute(update(t.jobs).where(t.jobs.c.id.in_(older)).values(status=SUPERSEDED, finished_at=now()))
        for job_id in older:
            self.registry._event(
                conn,
                model_id,
                "job_superseded",
                f"job {job_id} superseded by job {newest}, which trains on newer data",
                payload={"job": job_id, "by": newest},
            )

    def claim(self, worker_id: str, lease_seconds: float | None = None) -> Job | None:
        """Take the oldest runnable job under a lease, or None. A job is runnable when it is queued, or running
        with an expired lease (its worker died), and no other job of its model holds a live lease."""
        registry = self.registry
        with registry._write() as conn:
            stamp = now()
            self._give_up_dead(conn, stamp)
            other = t.jobs.alias("other")
            busy = exists().where(
                other.c.model_id == t.jobs.c.model_id,
                other.c.id != t.jobs.c.id,
                other.c.status == RUNNING,
                other.c.lease_expires >= stamp,
            )
            runnable = or_(t.jobs.c.status == QUEUED, and_(t.jobs.c.status == RUNNING, t.jobs.c.lease_expires < stamp))
            query = select(t.jobs.c.id, t.jobs.c.model_id).where(runnable, ~busy).order_by(t.jobs.c.id)
            if not registry._sqlite:
                query = query.with_for_update(skip_locked=True, of=t.jobs)
            for candidate in conn.execute(query).all():
                if not registry._sqlite and not self._lock_model(conn, candidate.model_id, candidate.id, stamp):
                    continue
                self._take(conn, candidate.id, candidate.model_id, worker_id, stamp + self._lease(lease_seconds))
                job_id = candidate.id
                break
            else:
                return None
        return self.job(job_id)

    def _lease(self, seconds: float | None) -> timedelta:
        return timedelta(seconds=self.lease_seconds if seconds is None else seconds)

    @staticmethod
    def _lock_model(conn: Connection, model_id: int, job_id: int, stamp: datetime) -> bool:
        """PostgreSQL: serialize claims per model on its row, then re-check (with the now-visible commits of
        other workers) that no other job of the model holds a live lease."""
        locked = conn.execute(
            select(t.models.c.id).where(t.models.c.id == model_id).with_for_update(skip_locked=True)
        ).scalar()
        if locked is None:
            return False
        running = conn.execute(
            select(t.jobs.c.id).where(
                t.jobs.c.model_id == model_id,
                t.jobs.c.id != job_id,
                t.jobs.c.status == RUNNING,
                t.jobs.c.lease_expires >= stamp,
            )
        ).first()
        return running is None

    def _take(self, conn: Connection, job_id: int, model_id: int, worker_id: str, expires: datetime) -> None:
        row = conn.execute(select(t.jobs.c.attempts, t.jobs.c.lease_owner).where(t.jobs.c.id == job_id)).one()
        attempt = row.attempts + 1
        conn.execute(
            update(t.jobs)
            .where(t.jobs.c.id == job_id)
            .values(status=RUNNING, lease_owner=worker_id, lease_expires=expires, attempts=attempt)
        )
        previous = f" (after {row.lease_owner} stopped renewing its lease)" if row.lease_owner else ""
        self.registry._event(
            conn,
            model_id,
            "job_started",
            f"job {job_id} started by {worker_id}, attempt {attempt}{previous}",
            payload={"job": job_id, "worker": worker_id, "attempt": attempt},
        )

    def _give_up_dead(self, conn: Connection, stamp: datetime) -> None:
        """Fail jobs whose lease expired on their last allowed attempt (a job that kills its worker)."""
        dead = conn.execute(
            select(t.jobs.c.id, t.jobs.c.model_id, t.jobs.c.attempts).where(
                t.jobs.c.status == RUNNING, t.jobs.c.lease_expires < stamp, t.jobs.c.attempts >= self.max_attempts
            )
        ).all()
        for job in dead:
            error = f"its worker stopped renewing the lease {job.attempts} times; run 'shoal retrain' to try again"
            self._close(conn, job.id, job.model_id, FAILED, error, f"job {job.id} failed: {error}", {})

    def heartbeat(self, job_id: int, worker_id: str, lease_seconds: float | None = None) -> bool:
        """Extend the lease; False when the worker no longer holds it (it expired and was claimed again)."""
        with self.registry._write() as conn:
            changed = conn.execute(
                update(t.jobs)
                .where(t.jobs.c.id == job_id, t.jobs.c.lease_owner == worker_id, t.jobs.c.status == RUNNING)
                .values(lease_expires=now() + self._lease(lease_seconds))
            ).rowcount
        return changed == 1

    def finish(
        self,
        job_id: int,
        worker_id: str,
        error: str | None = None,
        *,
        message: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> bool:
        """Mark a held job done (or failed with `error`) with its `job_finished`/`job_failed` event. False when
        the worker no longer holds the lease: then the job belongs to whoever claimed it since."""
        status = FAILED if error else DONE
        summary = message or (f"failed: {error}" if error else "done")
        with self.registry._write() as conn:
            model_id = self._held(conn, job_id, worker_id)
            if model_id is None:
                return False
            self._close(conn, job_id, model_id, status, error, f"job {job_id} {summary}", payload or {})
        return True

    def release(self, job_id: int, worker_id: str, why: str) -> bool:
        """Hand a held job back to the queue at once (a worker stopping cleanly), not counting the attempt."""
        with self.registry._write() as conn:
            model_id = self._held(conn, job_id, worker_id)
            if model_id is None:
                return False
            conn.execute(
                update(t.jobs)
                .where(t.jobs.c.id == job_id)
                .values(status=QUEUED, lease_owner=None, lease_expires=None, attempts=t.jobs.c.attempts - 1)
            )
            self.registry._event(
                conn,
                model_id,
                "job_released",
                f"job {job_id} handed back to the queue by {worker_id}: {why}",
                payload={"job": job_id, "worker": worker_id},
            )
        return True

    def hand_back_expired(self, actor: str) -> list[Job]:
        """What `claim` does to a job whose lease ran out, without taking one: back to the queue (its attempt
        counted), or failed on its last attempt. Returns the jobs as they are now."""
        with self.registry._write() as conn:
            stamp = now()
            changed = list(
                conn.execute(
                    select(t.jobs.c.id).where(t.jobs.c.status == RUNNING, t.jobs.c.lease_expires < stamp)
                ).scalars()
            )
            self._give_up_dead(conn, stamp)
            stale = conn.execute(
                select(t.jobs.c.id, t.jobs.c.model_id, t.jobs.c.lease_owner).where(
                    t.jobs.c.status == RUNNING, t.jobs.c.lease_expires < stamp
                )
            ).all()
            for job in stale:  # only while still expired: a worker may have claimed it meanwhile (PostgreSQL)
                moved = conn.execute(
                    update(t.jobs)
                    .where(t.jobs.c.id == job.id, t.jobs.c.status == RUNNING, t.jobs.c.lease_expires < stamp)
                    .values(status=QUEUED, lease_owner=None, lease_expires=None)
                ).rowcount
                if moved:
                    self.registry._event(
                        conn,
                        job.model_id,
                        "job_released",
                        f"job {job.id} handed back to the queue by {actor}: {job.lease_owner} stopped renewing "
                        "its lease",
                        payload={"job": job.id, "worker": job.lease_owner},
                    )
        return [self.job(job_id) for job_id in changed]

    @staticmethod
    def _held(conn: Connection, job_id: int, worker_id: str) -> int | None:
        return conn.execute(
            select(t.jobs.c.model_id).where(
                t.jobs.c.id == job_id, t.jobs.c.lease_owner == worker_id, t.jobs.c.status == RUNNING
            )
        ).scalar()

    def _close(
        self,
        conn: Connection,
        job_id: int,
        model_id: int,
        status: str,
        error: str | None,
        message: str,
        payload: dict[str, Any],
    ) -> None:
        conn.execute(
            update(t.jobs)
            .where(t.jobs.c.id == job_id)
            .values(status=status, error=error, finished_at=now(), lease_expires=None)
        )
        kind = "job_failed" if status == FAILED else "job_finished"
        self.registry._event(conn, model_id, kind, message, payload={"job": job_id, "error": error, **payload})
