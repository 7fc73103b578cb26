"""The prediction log and its feedback: what each request was answered with, and labels users sent back.

The server calls `record(request_id, model, version, texts, labels)` on every prediction; rows are buffered in
memory and written by a background thread in batches, so the predict path never waits on the database. Rows
older than the retention (or beyond the row limit) are deleted. Feedback names a request id (and which of its
inputs); it is joined to the logged prediction and kept until the worker turns it into a data drop.

A row the database refuses (a NUL character on PostgreSQL, a lone surrogate anywhere) is dropped alone and
counted; the rest are written. A database that cannot be reached keeps the rows buffered for the next flush. The
buffer holds at most SHOAL_PREDICTION_MAX_BUFFERED rows (default 100000): beyond that the oldest are dropped and
counted (`dropped`, shown in the server's /metrics). Log lines name counts and error types, never users' texts.

The tables live in the registry database by default (so every server and worker share them); set
SHOAL_PREDICTION_LOG_URL to use another database. The fleet file's `workspace.prediction_log` bounds it (retention
hours, rows) and may log only a share of the requests (`sample`: a request is logged whole or not at all);
SHOAL_PREDICTION_RETENTION_HOURS and SHOAL_PREDICTION_MAX_ROWS, when set, win over the fleet file.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DataError, IntegrityError

from shoal.registry.database import Registry, make_engine, now

URL_ENV = "SHOAL_PREDICTION_LOG_URL"
RETENTION_ENV = "SHOAL_PREDICTION_RETENTION_HOURS"
MAX_ROWS_ENV = "SHOAL_PREDICTION_MAX_ROWS"
MAX_BUFFERED_ENV = "SHOAL_PREDICTION_MAX_BUFFERED"
PRUNE_EVERY_S = 60.0
CLOSE_WAIT_S = 10.0  # how long close() waits for a flush in progress
REFUSED, OVERFLOW, CLOSED = "refused", "overflow", "closed"  # why a prediction was not logged
ROW_ERRORS = (DataError, IntegrityError, UnicodeError)  # what one row's values cause, unlike an outage

logger = logging.getLogger("shoal.prediction_log")

metadata = MetaData()
predictions = Table(
    "prediction_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("request_id", String(128), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("model", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("text_hash", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("predicted", Text),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    # ids only grow, even after the retention prune empties the table: a cold start reads the answers logged after
    # the last id it took (`logged_after`); SQLite would otherwise hand out the pruned ids again
    sqlite_autoincrement=True,
)
feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("request_id", String(128), nullable=False),
    Column("position", Integer, nullable=False),
    Column("model", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("predicted", Text),
    Column("outcome", Text),  # None while pending; then the drop it became, or why it was left out
    Column("at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("model", "request_id", "position", name="uq_feedback"),
    Index("ix_feedback_model", "model", "outcome"),
)


#: a prediction row as `record` buffers it: its values in the order of `COLUMNS`
Row = tuple[str, int, str, int, str, str, str | None, datetime]
COLUMNS = ("request_id", "position", "model", "version", "text_hash", "text", "predicted", "at")


class _RowInsert:
    """The INSERT of buffered rows, compiled once for the database's dialect and run by the DBAPI's executemany with
    the rows' values as they are (converted only where the column's type converts them): SQLAlchemy's executemany
    builds and converts every row's parameters in Python, which cost twice the insert itself."""

    def __init__(self, dialect: Dialect) -> None:
        compiled = insert(predictions).compile(dialect=dialect, column_keys=list(COLUMNS), for_executemany=True)
        self.sql = compiled.string
        self.named = not compiled.positional
        if not self.named and tuple(compiled.positiontup or ()) != COLUMNS:
            raise RuntimeError(f"unexpected column order in {self.sql}")
        processors = [predictions.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in COLUMNS]
        self.processors = [(i, process) for i, process in enumerate(processors) if process is not None]

    def parameters(self, rows: list[Row]) -> list[Any]:
        """`rows` as the DBAPI takes them: each value as SQLAlchemy's type would bind it (SQLite: `at` as text)."""
        if self.processors:
            rows = [self._processed(row) for row in rows]
        return [dict(zip(COLUMNS, row, strict=True)) for row in rows] if self.named else rows

    def _processed(self, row: Row) -> Any:
        values = list(row)
        for i, process in self.processors:
            values[i] = process(values[i])
        return tuple(values)


class FeedbackError(ValueError):
    """Feedback that cannot be joined to a logged prediction: which input of the request is unclear or missing."""


class NotLogged(FeedbackError):
    """No prediction with that request id is in the log (never made, or older than the retention)."""


class AlreadyLabelled(FeedbackError):
    """That input of the request already has feedback; the first label sent is kept."""


@dataclass(frozen=True)
class Feedback:
    id: int
    request_id: str
    position: int
    model: str
    version: int
    text: str
    label: str
    predicted: str | None


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class PredictionLog:
    """Buffered, bounded log of predictions plus the feedback joined to them."""

    def __init__(
        self,
        engine: Engine,
        *,
        retention: timedelta = timedelta(days=7),
        max_rows: int = 1_000_000,
        flush_seconds: float = 0.5,
        max_buffered: int = 100_000,
        sample: float = 1.0,
        owns_engine: bool = False,
    ) -> None:
        self.engine = engine
        self.sample = sample
        self._draw = random.Random()
        self.retention = retention
        self.max_rows = max_rows
        self.flush_seconds = flush_seconds
        self.max_buffered = max_buffered
        self._owns_engine = owns_engine
        self._buffer: deque[Row] = deque()
        self._dropped = {REFUSED: 0, OVERFLOW: 0, CLOSED: 0}
        self._reported = dict(self._dropped)
        self._lock = threading.Lock()
        # one flush at a time: a flush that finds the buffer empty must not return while another thread's flush is
        # still writing the rows it took (feedback flushes, then reads the rows it joins to)
        self._flushing = threading.Lock()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._pruned = 0.0
        self._statement = _RowInsert(engine.dialect)
        metadata.create_all(engine)

    @classmethod
    def for_registry(
        cls, registry: Registry, *, retention_hours: float = 168.0, max_rows: int = 1_000_000, sample: float = 1.0
    ) -> PredictionLog:
        """The log beside `registry`: in the registry database unless SHOAL_PREDICTION_LOG_URL names another;
        bounded as given (the fleet file's `workspace.prediction_log`) unless the environment says otherwise."""
        retention = timedelta(hours=float(os.environ.get(RETENTION_ENV, retention_hours)))
        bounds: dict[str, Any] = {
            "retention": retention,
            "max_rows": int(os.environ.get(MAX_ROWS_ENV, max_rows)),
            "max_buffered": int(os.environ.get(MAX_BUFFERED_ENV, "100000")),
            "sample": sample,
        }
        url = os.environ.get(URL_ENV)
        if url:
            return cls(make_engine(url), owns_engine=True, **bounds)
        return cls(registry.engine, **bounds)

    @property
    def dropped(self) -> dict[str, int]:
        """Predictions not logged since start, by reason: refused (by the database), overflow (buffer full),
        closed (recorded after `close`, when nothing would write them)."""
        with self._lock:
            return dict(self._dropped)

    @property
    def buffered(self) -> int:
        """Rows waiting for the next flush."""
        return len(self._buffer)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(shoal_write=True) as conn, conn.begin():
            yield conn

    # -- the predict path ---------------------------------------------------------------------------
    def record(
        self,
        request_id: str,
        model: str,
        version: int,
        texts: Sequence[str],
        labels: Sequence[str] | None = None,
        positions: Sequence[int] | None = None,
    ) -> None:
        """Log one answered request (its inputs and, if given, the predicted labels; each input at its index in the
        request, or at `positions` when only some of a pipeline request's inputs reached this model). Never blocks
        on I/O. With `sample` below 1, only that share of the requests is logged."""
        if self.sample < 1 and self._draw.random() >= self.sample:
            return
        at = now()
        if positions is None:
            positions = range(len(texts))
        if labels is None:
            labels = [None] * len(texts)  # type: ignore[list-item]
        rows = [
            (request_id, position, model, version, text_hash(text), text, label, at)
            for position, text, label in zip(positions, texts, labels, strict=True)
        ]
        with self._lock:
            if self._stop.is_set():
                self._dropped[CLOSED] += len(rows)
                return
            self._buffer.extend(rows)
            if len(self._buffer) > self.max_buffered:
                self._trim()
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_loop, name="prediction-log", daemon=True)
                self._flusher.start()
                atexit.register(self.close)  # a server stopping normally writes what is buffered

    def _trim(self) -> None:
        """Drop the oldest rows beyond `max_buffered` (the lock is held)."""
        over = len(self._buffer) - self.max_buffered
        for _ in range(over):
            self._buffer.popleft()
        if over > 0:
            self._dropped[OVERFLOW] += over

    def _flush_loop(self) -> None:
        failing = False
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception as error:  # the database is away: keep the rows and try again at the next tick
                if not failing:
                    logger.warning(
                        "prediction log: cannot write (%s); %d row(s) kept for the next try",
                        type(error).__name__,
                        self.buffered,
                    )
                failing = True
                time.sleep(self.flush_seconds)
            else:
                if failing:
                    logger.info("prediction log: writing again")
                failing = False

    def flush(self) -> int:
        """Write buffered rows now (and prune old ones at most once a minute); returns how many were written.
        Rows the database refuses are dropped and counted; if it cannot be reached, the rows stay buffered and
        the error is raised."""
        with self._flushing:
            with self._lock:
                rows = list(self._buffer)
                self._buffer.clear()
            try:
                written = self._insert(rows) if rows else 0
            finally:
                self._report()
        if time.monotonic() - self._pruned >= PRUNE_EVERY_S:
            self.prune()
        return written

    def _insert(self, rows: list[Row]) -> int:
        """Insert `rows` in order; returns how many were written. A batch the database refuses is halved until
        each refused row is alone, and that row dropped. Any other failure puts the rows not yet written back at
        the head of the buffer and raises."""
        written = 0
        todo = [rows]  # batches still to write, the next one last
        while todo:
            batch = todo.pop()
            try:
                with self._write() as conn:
                    conn.exec_driver_sql(self._statement.sql, self._statement.parameters(batch))
            except ROW_ERRORS:
                if len(batch) == 1:
                    with self._lock:
                        self._dropped[REFUSED] += 1
                else:
                    half = len(batch) // 2
                    todo += [batch[half:], batch[:half]]
                continue
            except Exception:
                unwritten = [row for part in [batch, *reversed(todo)] for row in part]
                with self._lock:
                    self._buffer.extendleft(reversed(unwritten))
                    self._trim()
                raise
            written += len(batch)
        return written

    def _report(self) -> None:
        """Log how many predictions were dropped since the last report (counts only, never texts)."""
        with self._lock:
            new = {reason: count - self._reported[reason] for reason, count in self._dropped.items()}
            self._reported = dict(self._dropped)
        if new[REFUSED]:
            logger.warning("prediction log: the database refused %d row(s); they are not logged", new[REFUSED])
        if new[CLOSED]:
            logger.warning("prediction log: %d row(s) arrived after it was closed; they are not logged", new[CLOSED])
        if new[OVERFLOW]:
            logger.warning(
                "prediction log: %d row(s) dropped, the buffer of %d rows was full", new[OVERFLOW], self.max_buffered
            )

    def prune(self) -> int:
        """Delete predictions older than the retention and beyond the row limit; returns how many went."""
        self._pruned = time.monotonic()
        with self._write() as conn:
            gone = conn.execute(delete(predictions).where(predictions.c.at < now() - self.retention)).rowcount
            cutoff = conn.execute(
                select(predictions.c.id).order_by(predictions.c.id.desc()).offset(self.max_rows).limit(1)
            ).scalar()
            if cutoff is not None:
                gone += conn.execute(delete(predictions).where(predictions.c.id <= cutoff)).rowcount
        return int(gone)

    def close(self) -> None:
        """Write what is buffered and stop the background thread."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=CLOSE_WAIT_S)
        if self.buffered:
            try:
                self.flush()
            except Exception as error:
                logger.error(
                    "prediction log: %d row(s) not written at shutdown (%s)", self.buffered, type(error).__name__
                )
        self._report()
        if self._owns_engine:
            self.engine.dispose()

    def recent(
        self, model: str, version: int, limit: int, since: datetime | None = None
    ) -> list[tuple[str, str | None]]:
        """The newest `limit` logged (input text, predicted) of `model` at `version` (logged at or after `since`, if
        given), oldest first."""
        query = (
            select(predictions.c.text, predictions.c.predicted)
            .where(predictions.c.model == model, predictions.c.version == version)
            .order_by(predictions.c.id.desc())
            .limit(limit)
        )
        if since is not None:
            query = query.where(predictions.c.at >= since)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [(row.text, row.predicted) for row in reversed(rows)]

    def logged_after(
        self, model: str, version: int, after: int | None, limit: int
    ) -> list[tuple[int, str, str | None]]:
        """The first `limit` logged (id, input text, predicted) of `model` at `version` whose id is above `after`
        (every one when None), oldest first: a reader that keeps the last id it took reads each row once."""
        query = (
            select(predictions.c.id, predictions.c.text, predictions.c.predicted)
            .where(predictions.c.model == model, predictions.c.version == version)
            .order_by(predictions.c.id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(predictions.c.id > after)
        with self.engine.connect() as connection:
            return [(row.id, row.text, row.predicted) for row in connection.execute(query)]

    # -- feedback -----------------------------------------------------------------------------------
    def add_feedback(self, model: str, request_id: str, label: str, position: int | None = None) -> Feedback:
        """Join a label to a logged prediction of `model`. Raises NotLogged, AlreadyLabelled or FeedbackError."""
        self.flush()
        query = (
            select(predictions)
            .where(predictions.c.model == model, predictions.c.request_id == request_id)
            .order_by(predictions.c.id)
        )
        with self.engine.connect() as conn:
            logged = conn.execute(query).all()
        if not logged:
            raise NotLogged(
                f"no prediction of {model!r} with request id {request_id!r} is in the log (it may be older than "
                "the retention, or not sampled: workspace.prediction_log); send the request_id a predict response "
                "returned",
            )
        if position is None and len(logged) > 1:
            raise FeedbackError(f"request {request_id} had {len(logged)} inputs; say which with 'index'")
        match = [row for row in logged if row.position == (position or 0)]
        if not match:
            raise FeedbackError(f"request {request_id} had {len(logged)} inputs; index must be below that")
        row = match[-1]
        values = dict(
            request_id=request_id,
            position=row.position,
            model=model,
            version=row.version,
            text=row.text,
            label=label,
            predicted=row.predicted,
        )
        try:
            with self._write() as conn:
                feedback_id = conn.execute(insert(feedback).values(**values, at=now())).inserted_primary_key[0]
        except IntegrityError:
            raise AlreadyLabelled(
                f"input {row.position} of request {request_id} already has feedback; it is kept as first sent"
            ) from None
        return Feedback(id=int(feedback_id), **values)  # type: ignore[arg-type]

    def feedback(self, model: str, *, pending: bool = False) -> list[Feedback]:
        """The model's joined feedback, oldest first (only what is not yet a data drop, with `pending`)."""
        query = select(feedback).where(feedback.c.model == model).order_by(feedback.c.id)
        if pending:
            query = query.where(feedback.c.outcome.is_(None))
        with self.engine.connect() as conn:
            return [
                Feedback(r.id, r.request_id, r.position, r.model, r.version, r.text, r.label, r.predicted)
                for r in conn.execute(query)
            ]

    def settle_feedback(self, ids: Sequence[int], outcome: str) -> None:
        """Record what pending feedback became (a drop hash, or why it was left out)."""
        with self._write() as conn:
            conn.execute(update(feedback).where(feedback.c.id.in_(list(ids))).values(outcome=outcome))
