"""The registry: the only code that talks SQL. Models, data drops, versions, aliases with history, the
append-only event log, and the pipelines' test drops and end-to-end scores. SQLite (WAL, write transactions taken
up front) by default; any SQLAlchemy URL.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, func, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError

from shoal.faults import checkpoint
from shoal.registry import schema as t
from shoal.registry.artifacts import ArtifactError, ArtifactStore, StoreFull, free_bytes, store_full
from shoal.registry.records import (
    LEGACY_LLM_ANSWERS,
    LLM_ANSWERS,
    AliasChange,
    Drop,
    Event,
    ModelDefaults,
    PipelineDrop,
    PipelineScore,
    Version,
    VersionMetrics,
)
from shoal.registry.shared_store import Store

if TYPE_CHECKING:  # pandas only where drops are read: a server never needs it
    import pandas as pd

PRODUCTION = "production"
_PG_DISK_FULL = "53100"
_NEARLY_FULL = 1 << 20  # bytes


RECENT_SLOTS = 16  # how far back record_event_once looks for a slot (slots come in time order)


class RegistryError(RuntimeError):
    """A registry request that cannot be honoured (unknown model or version, nothing to roll back to)."""


def now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def params_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def resolve_url(url: str, root: Path) -> str:
    """A registry URL with a relative SQLite file path made absolute against `root` (the workspace folder)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        database = Path(parsed.database)
        if not database.is_absolute():
            return str(parsed.set(database=str(root / database)))
    return url


def disk_full(error: DBAPIError, url: str) -> StoreFull | None:
    """The one-line `StoreFull` for a database write refused because its disk is full (else None)."""
    parsed = make_url(url)
    original = error.orig
    code = getattr(original, "sqlite_errorcode", None)  # errors the sqlite3 module raises itself have none
    if isinstance(original, sqlite3.Error) and code is not None:
        database = Path(parsed.database or ".")
        # SQLite reports a full disk as SQLITE_FULL, or as an I/O error (the WAL index cannot grow) on a full disk
        io_error_on_full_disk = code & 0xFF == sqlite3.SQLITE_IOERR and free_bytes(database) < _NEARLY_FULL
        if code == sqlite3.SQLITE_FULL or io_error_on_full_disk:
            return store_full(database, "to the registry database")
    if getattr(original, "sqlstate", None) == _PG_DISK_FULL:
        return StoreFull(
            f"the PostgreSQL server at {parsed.host or 'localhost'} has no space left for the registry database "
            f"{parsed.database!r}; nothing was stored. Free space on the server's data disk and retry"
        )
    return None


def database_exists(url: str) -> bool:
    """False only for a SQLite file not created yet (opening the registry would create it); any other database
    is taken to exist."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return True
    return Path(parsed.database).exists()


@contextmanager
def temporary_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of `server_url` (whose own database is only used to create
    and drop it), dropped at the end even while connections remain; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_engine(url: str) -> Engine:
    """An engine for `url`. Its errors never show the statement's parameters (they hold users' texts)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 120, "check_same_thread": False}, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=120000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # a write transaction takes the lock first, so two writers queue instead of deadlocking
        write = connection.get_execution_options().get("shoal_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class Registry:
    """Versions, aliases, drops and events of every model, plus the artifact store they point into."""

    def __init__(self, url: str, artifacts: Path | Store) -> None:
        """`artifacts`: the store, or the folder of a local one."""
        self.url = url
        self.engine = make_engine(url)
        self.artifacts: Store = ArtifactStore(artifacts) if isinstance(artifacts, Path) else artifacts
        self._sqlite = self.engine.dialect.name == "sqlite"
        with self._disk_full_as_error():
            t.metadata.create_all(self.engine)
            self._llm_answers_provenance()

    def close(self) -> None:
        self.engine.dispose()

    def _llm_answers_provenance(self) -> None:
        """Give its provenance to each drop of a cold start's LLM answers stored before such drops had one (then their
        source alone marked them: `LEGACY_LLM_ANSWERS`); a read only, when there is none (the usual case)."""
        legacy = (
            select(t.drops.c.id, t.drops.c.source)
            .outerjoin(t.drop_provenance, t.drop_provenance.c.drop_id == t.drops.c.id)
            .where(t.drop_provenance.c.drop_id.is_(None), t.drops.c.source.like(f"{LLM_ANSWERS} of v% answer(s)"))
        )
        with self._read() as conn:
            found = [(row.id, LEGACY_LLM_ANSWERS.fullmatch(row.source)) for row in conn.execute(legacy)]
        if not any(match for _, match in found):
            return
        with suppress(IntegrityError), self._write() as conn:  # IntegrityError: another process wrote them first
            for drop_id, match in found:
                if match is None:
                    continue
                version, endpoint, model, prompt, _ = match.groups()
                record = {
                    "kind": LLM_ANSWERS,
                    "teacher": f"llm:{endpoint}",
                    "endpoint_model": model,
                    "prompt_hash": prompt,  # its first 12 hex digits: all such a source kept
                    "version": int(version),
                    "last_log_id": None,
                    "confidence": None,
                }
                conn.execute(insert(t.drop_provenance).values(drop_id=drop_id, kind=LLM_ANSWERS, record=record))

    # -- plumbing -----------------------------------------------------------------------------------
    @contextmanager
    def _disk_full_as_error(self) -> Iterator[None]:
        try:
            yield
        except DBAPIError as error:
            full = disk_full(error, self.url)
            if full is None:
                raise
            raise full from None

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction; a full disk rolls it back and raises `StoreFull`."""
        with (
            self._disk_full_as_error(),
            self.engine.connect().execution_options(shoal_write=True) as conn,
            conn.begin(),
        ):
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._disk_full_as_error(), self.engine.connect() as conn:  # SQLite may need to write to read
            yield conn

    def _model_id(self, conn: Connection, name: str, *, lock: bool = False) -> int:
        query = select(t.models.c.id).where(t.models.c.name == name)
        if lock and not self._sqlite:
            query = query.with_for_update()
        model_id = conn.execute(query).scalar()
        if model_id is None:
            raise RegistryError(f"model {name!r} has no data or versions yet; ingest data with 'shoal ingest'")
        return int(model_id)

    def ensure_model(self, name: str, task: str) -> None:
        with self._write() as conn:
            exists = conn.execute(select(t.models.c.id).where(t.models.c.name == name)).scalar()
            if exists is None:
                conn.execute(insert(t.models).values(name=name, task=task, created_at=now()))

    def model_names(self) -> list[str]:
        with self._read() as conn:
            return list(conn.execute(select(t.models.c.name).order_by(t.models.c.name)).scalars())

    def _event(
        self,
        conn: Connection,
        model_id: int | None,
        kind: str,
        message: str,
        version: int | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        conn.execute(
            insert(t.events).values(
                model_id=model_id,
                kind=kind,
                version=version,
                message=message,
                payload=payload or {},
                at=now(),
            )
        )

    def record_event(
        self, model: str, kind: str, message: str, version: int | None = None, payload: dict[str, Any] | None = None
    ) -> None:
        with self._write() as conn:
            self._event(conn, self._model_id(conn, model), kind, message, version, payload)

    def record_event_once(
        self, model: str, kind: str, slot: str, message: str, version: int | None, payload: dict[str, Any]
    ) -> bool:
        """Record the event of `kind` for `slot` (kept in its payload) unless one of the model's `RECENT_SLOTS`
        latest events of that kind is already this slot's; whether this call recorded it. Checked and written in one
        transaction that holds the model's row (PostgreSQL) or the database's write lock (SQLite), so of several
        processes recording the same slot at once exactly one does."""
        with self._write() as conn:
            model_id = self._model_id(conn, model, lock=True)
            recent = conn.execute(
                select(t.events.c.payload)
                .where(t.events.c.model_id == model_id, t.events.c.kind == kind)
                .order_by(t.events.c.id.desc())
                .limit(RECENT_SLOTS)
            ).scalars()
            if any(isinstance(payload, dict) and payload.get("slot") == slot for payload in recent):
                return False
            self._event(conn, model_id, kind, message, version, {**payload, "slot": slot})
            return True

    def events(
        self,
        model: str | None = None,
        *,
        after_id: int = 0,
        limit: int = 1000,
        kind: str | tuple[str, ...] | None = None,
        latest: bool = False,
    ) -> list[Event]:
        """Events oldest first: the first `limit` after `after_id`, or with `latest` the last `limit`; of one model
        and of one kind (or any of several) if given."""
        query = (
            select(t.events, t.models.c.name)
            .join(t.models, t.models.c.id == t.events.c.model_id, isouter=True)
            .where(t.events.c.id > after_id)
            .order_by(t.events.c.id.desc() if latest else t.events.c.id)
            .limit(limit)
        )
        if model is not None:
            query = query.where(t.models.c.name == model)
        if kind is not None:
            query = query.where(t.events.c.kind.in_((kind,) if isinstance(kind, str) else kind))
        with self._read() as conn:
            found = [
                Event(row.id, row.name, row.kind, row.version, row.message, row.payload, _aware(row.at))
                for row in conn.execute(query)
            ]
        return found[::-1] if latest else found

    def count_events(self, kind: str) -> dict[str, int]:
        """How many events of `kind` each model has (models with none are left out)."""
        query = (
            select(t.models.c.name, func.count())
            .select_from(t.events.join(t.models, t.models.c.id == t.events.c.model_id))
            .where(t.events.c.kind == kind)
            .group_by(t.models.c.name)
        )
        with self._read() as conn:
            return {name: int(count) for name, count in conn.execute(query)}

    def last_event(self, model: str, kind: str) -> Event | None:
        """The model's latest event of `kind`, or None."""
        query = (
            select(t.events)
            .join(t.models, t.models.c.id == t.events.c.model_id)
            .where(t.models.c.name == model, t.events.c.kind == kind)
            .order_by(t.events.c.id.desc())
            .limit(1)
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        return (
            None
            if row is None
            else Event(row.id, model, row.kind, row.version, row.message, row.payload, _aware(row.at))
        )

    # -- defaults chosen from the data ------------------------------------------------------------
    def defaults(self, model: str) -> ModelDefaults | None:
        """The defaults kept for `model` (None: not chosen yet, or no such model)."""
        query = (
            select(t.model_defaults)
            .join(t.models, t.models.c.id == t.model_defaults.c.model_id)
            .where(t.models.c.name == model)
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else ModelDefaults(row.settings, row.profile, row.why, _aware(row.created_at))

    def keep_defaults(self, model: str, settings: dict[str, Any], profile: dict[str, Any], why: str) -> ModelDefaults:
        """Record `model`'s defaults unless some are recorded already (the first wins, for the model's life), with a
        `defaults` event; returns the ones kept."""
        with self._write() as conn:
            model_id = self._model_id(conn, model, lock=True)
            row = conn.execute(select(t.model_defaults).where(t.model_defaults.c.model_id == model_id)).first()
            if row is not None:
                return ModelDefaults(row.settings, row.profile, row.why, _aware(row.created_at))
            at = now()
            conn.execute(
                insert(t.model_defaults).values(
                    model_id=model_id, settings=settings, profile=profile, why=why, created_at=at
                )
            )
            chosen = ", ".join(f"{key} {value}" for key, value in settings.items())
            self._event(conn, model_id, "defaults", f"defaults chosen: {chosen} ({why})", payload={"profile": profile})
        return ModelDefaults(settings, profile, why, at)

    # -- data drops ---------------------------------------------------------------------------------
    def add_drop(
        self,
        model: str,
        task: str,
        frame: pd.DataFrame,
        *,
        content_hash: str,
        source: str,
        split: str,
        warnings: list[str],
        provenance: dict[str, Any] | None = None,
    ) -> tuple[Drop, bool]:
        """Store a validated drop (rows with a `split` column) and, for labels no human gave, its `provenance`
        (a JSON object with a `kind`; see `Drop.provenance`) in the same transaction; returns (drop, created)."""
        self.ensure_model(model, task)
        existing = self.drop(model, content_hash)
        if existing is not None:
            return existing, False
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        uri, written = self.artifacts.put_file(buffer.getvalue(), f"data/{model}/{content_hash}.parquet")
        checkpoint("drop_written")
        n_test = int((frame["split"] == "test").sum())
        values = dict(
            hash=content_hash,
            uri=uri,
            source=source,
            split=split,
            n_rows=len(frame),
            n_train=len(frame) - n_test,
            n_test=n_test,
            warnings=warnings,
            created_at=now(),
        )
        try:
            with self._write() as conn:
                model_id = self._model_id(conn, model)
                drop_id = conn.execute(insert(t.drops).values(model_id=model_id, **values)).inserted_primary_key[0]
                if provenance is not None:
                    conn.execute(
                        insert(t.drop_provenance).values(drop_id=drop_id, kind=provenance["kind"], record=provenance)
                    )
                self._event(
                    conn,
                    model_id,
                    "ingested",
                    f"drop {content_hash[:12]} from {source}: {len(frame)} rows "
                    f"({values['n_train']} train, {n_test} test)",
                    payload={"drop": content_hash, "warnings": warnings}
                    | ({"provenance": provenance["kind"]} if provenance else {}),
                )
        except IntegrityError:
            found = self.drop(model, content_hash)
            assert found is not None
            return found, False
        except BaseException:
            with suppress(Exception):  # no row came to use the file: take it back (the error is what matters)
                if written and self.drop(model, content_hash) is None:
                    self.artifacts.remove(uri)
            raise
        return Drop(model=model, **values, provenance=provenance), True  # type: ignore[arg-type]

    def drop(self, model: str, content_hash: str) -> Drop | None:
        return next((d for d in self.drops(model) if d.hash == content_hash), None)

    def drops(self, model: str) -> list[Drop]:
        query = (
            select(t.drops, t.models.c.name, t.drop_provenance.c.record.label("provenance"))
            .join(t.models, t.models.c.id == t.drops.c.model_id)
            .outerjoin(t.drop_provenance, t.drop_provenance.c.drop_id == t.drops.c.id)
            .where(t.models.c.name == model)
            .order_by(t.drops.c.id)
        )
        with self._read() as conn:
            return [
                Drop(
                    row.name,
                    row.hash,
                    row.uri,
                    row.source,
                    row.split,
                    row.n_rows,
                    row.n_train,
                    row.n_test,
                    list(row.warnings),
                    _aware(row.created_at),
                    row.provenance,
                )  # type: ignore[arg-type]
                for row in conn.execute(query)
            ]

    def dataset_version(self, model: str, drops: list[Drop] | None = None) -> str:
        """The dataset version is the set of the model's drops, named by a hash of their hashes."""
        hashes = sorted(d.hash for d in (self.drops(model) if drops is None else drops))
        return hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:16]

    def load_drops(self, drops: list[Drop]) -> pd.DataFrame:
        import pandas as pd

        frames = [pd.read_parquet(self.artifacts.file(d.uri)) for d in drops]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    # -- pipelines: test drops and end-to-end scores ---------------------------------------------------
    def add_pipeline_drop(
        self, pipeline: str, frame: pd.DataFrame, *, content_hash: str, source: str
    ) -> tuple[PipelineDrop, bool]:
        """Store a validated pipeline test file as the pipeline's newest test drop; returns (drop, created). The
        same rows as the newest drop change nothing; rows stored earlier become the newest again (one file).

        The check, the file and the row are one step per pipeline (SQLite's write lock; on PostgreSQL a transaction
        lock on the pipeline's name): concurrent ingests of the same rows store them once, and a failed insert takes
        its file back only when no row pointed to it before."""
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        with self._write() as conn:
            if not self._sqlite:
                conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"pipeline_drops:{pipeline}"))))
            rows = conn.execute(
                select(t.pipeline_drops).where(t.pipeline_drops.c.pipeline == pipeline).order_by(t.pipeline_drops.c.id)
            ).all()
            if rows and rows[-1].hash == content_hash:
                return self._pipeline_drop(rows[-1]), False
            uri, written = self.artifacts.put_file(buffer.getvalue(), f"pipelines/{pipeline}/{content_hash}.parquet")
            checkpoint("drop_written")
            values = dict(pipeline=pipeline, hash=content_hash, uri=uri, source=source, n_rows=len(frame))
            created_at = now()
            try:
                conn.execute(insert(t.pipeline_drops).values(**values, created_at=created_at))
            except BaseException:
                if written and not any(row.uri == uri for row in rows):
                    with suppress(Exception):  # no row used the file: take it back (the error is what matters)
                        self.artifacts.remove(uri)
                raise
        return PipelineDrop(**values, created_at=created_at), True  # type: ignore[arg-type]

    @staticmethod
    def _pipeline_drop(row: Any) -> PipelineDrop:
        return PipelineDrop(row.pipeline, row.hash, row.uri, row.source, row.n_rows, _aware(row.created_at))  # type: ignore[arg-type]

    def pipeline_drops(self, pipeline: str | None = None) -> list[PipelineDrop]:
        """A pipeline's test drops (every pipeline's with None), oldest first."""
        query = select(t.pipeline_drops).order_by(t.pipeline_drops.c.id)
        if pipeline is not None:
            query = query.where(t.pipeline_drops.c.pipeline == pipeline)
        with self._read() as conn:
            return [self._pipeline_drop(row) for row in conn.execute(query)]

    def pipeline_drop(self, pipeline: str) -> PipelineDrop | None:
        """The pipeline's newest test drop (the one its evaluation uses), None before the first."""
        found = self.pipeline_drops(pipeline)
        return found[-1] if found else None

    def load_pipeline_drop(self, drop: PipelineDrop) -> pd.DataFrame:
        import pandas as pd

        return pd.read_parquet(self.artifacts.file(drop.uri))

    def pipeline_scores(self, pipeline: str) -> list[PipelineScore]:
        """The pipeline's end-to-end scores, one per production change of one of its models, oldest first."""
        query = (
            select(t.pipeline_scores).where(t.pipeline_scores.c.pipeline == pipeline).order_by(t.pipeline_scores.c.id)
        )
        with self._read() as conn:
            return [
                PipelineScore(
                    row.id,
                    row.pipeline,
                    row.model,
                    row.from_version,
                    row.to_version,
                    row.actor,
                    dict(row.record),
                    _aware(row.at),  # type: ignore[arg-type]
                )
                for row in conn.execute(query)
            ]

    # -- versions -----------------------------------------------------------------------------------
    def find_version(self, model: str, dataset_version: str, family: str, params: dict[str, Any]) -> Version | None:
        query = self._versions_query(model).where(
            t.versions.c.dataset_version == dataset_version,
            t.versions.c.family == family,
            t.versions.c.params_hash == params_hash(params),
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        return self._version(row) if row else None

    def register_version(
        self,
        model: str,
        *,
        family: str,
        params: dict[str, Any],
        dataset_version: str,
        code_version: str,
        metrics: VersionMetrics,
        staged: Path,
        test_hash: str,
        label_error_rate: float | None,
    ) -> tuple[Version, bool]:
        """Commit a staged artifact and record its version; returns (version, created).

        The version row is written only after the artifact is in place and hashed, in one transaction with
        its `trained` event. The same (dataset version, family, params) never makes a second version.
        """
        existing = self.find_version(model, dataset_version, family, params)
        if existing is not None:
            return existing, False
        key = f"models/{model}/{family}-{dataset_version[:12]}"
        uri, checksum, size, created = self.artifacts.commit(staged, key)
        self.artifacts.open(uri, checksum)
        checkpoint("artifact_committed")
        try:
            with self._write() as conn:
                model_id = self._model_id(conn, model, lock=True)
                number = (
                    conn.execute(
                        select(func.max(t.versions.c.number)).where(t.versions.c.model_id == model_id)
                    ).scalar()
                    or 0
                ) + 1
                conn.execute(
                    insert(t.versions).values(
                        model_id=model_id,
                        number=number,
                        family=family,
                        params=params,
                        params_hash=params_hash(params),
                        dataset_version=dataset_version,
                        code_version=code_version,
                        metrics=metrics.to_json(),
                        artifact_uri=uri,
                        checksum=checksum,
                        size_bytes=size,
                        test_hash=test_hash,
                        label_error_rate=label_error_rate,
                        created_at=now(),
                    )
                )
                self._event(
                    conn,
                    model_id,
                    "trained",
                    f"v{number} {family} on dataset {dataset_version}",
                    version=number,
                    payload={"family": family, "params": params},
                )
        except IntegrityError:
            found = self.find_version(model, dataset_version, family, params)
            if found is None:
                raise
            return found, False
        except BaseException:
            with suppress(Exception):  # no row came to use the folder: take it back (the error is what matters)
                if created and not any(v.artifact_uri == uri for v in self.versions(model)):
                    self.artifacts.remove(uri)
            raise
        return self.version(model, number), True

    def _versions_query(self, model: str) -> Any:
        return (
            select(t.versions, t.models.c.name.label("model_name"))
            .join(t.models, t.models.c.id == t.versions.c.model_id)
            .where(t.models.c.name == model)
        )

    @staticmethod
    def _version(row: Any) -> Version:
        return Version(
            model=row.model_name,
            number=row.number,
            family=row.family,
            params=dict(row.params),
            params_hash=row.params_hash,
            dataset_version=row.dataset_version,
            code_version=row.code_version,
            metrics=VersionMetrics.from_json(row.metrics),
            artifact_uri=row.artifact_uri,
            checksum=row.checksum,
            size_bytes=row.size_bytes,
            test_hash=row.test_hash,
            label_error_rate=row.label_error_rate,
            created_at=_aware(row.created_at),  # type: ignore[arg-type]
        )

    def versions(self, model: str) -> list[Version]:
        with self._read() as conn:
            rows = conn.execute(self._versions_query(model).order_by(t.versions.c.number)).all()
        return [self._version(row) for row in rows]

    def version(self, model: str, number: int) -> Version:
        with self._read() as conn:
            row = conn.execute(self._versions_query(model).where(t.versions.c.number == number)).first()
        if row is None:
            raise RegistryError(f"model {model!r} has no version {number}; see 'shoal versions {model}'")
        return self._version(row)

    # -- aliases ------------------------------------------------------------------------------------
    def alias(self, model: str, alias: str = PRODUCTION) -> int | None:
        query = (
            select(t.aliases.c.version)
            .join(t.models, t.models.c.id == t.aliases.c.model_id)
            .where(t.models.c.name == model, t.aliases.c.alias == alias)
        )
        with self._read() as conn:
            return conn.execute(query).scalar()

    def production_versions(self) -> dict[str, int]:
        """Every model's production version number, in one query (what the server polls)."""
        query = (
            select(t.models.c.name, t.aliases.c.version)
            .join(t.models, t.models.c.id == t.aliases.c.model_id)
            .where(t.aliases.c.alias == PRODUCTION)
        )
        with self._read() as conn:
            return {name: version for name, version in conn.execute(query)}

    def aliases(self) -> list[tuple[str, str, int]]:
        """Every alias of every model, as (model, alias, version)."""
        query = (
            select(t.models.c.name, t.aliases.c.alias, t.aliases.c.version)
            .join(t.models, t.models.c.id == t.aliases.c.model_id)
            .order_by(t.models.c.name, t.aliases.c.alias)
        )
        with self._read() as conn:
            return [(name, alias, version) for name, alias, version in conn.execute(query)]

    def set_alias(
        self,
        model: str,
        number: int,
        *,
        alias: str = PRODUCTION,
        actor: str,
        reason: str,
        event_kind: str = "promoted",
        payload: dict[str, Any] | None = None,
        pipeline_scores: list[tuple[str, dict[str, Any]]] | None = None,
    ) -> int | None:
        """Point `alias` at version `number`, recording the change, an event and the end-to-end score of each
        pipeline judged with the new version (`pipeline_scores`: (pipeline, record)) in one transaction; returns the
        version the alias held in that transaction (None: it had none).

        The version's artifact is verified first: an alias never moves to a version that cannot load."""
        version = self.version(model, number)
        problem = self.artifacts.problem(version.artifact_uri, version.checksum)
        if problem is not None:
            raise ArtifactError(
                f"refusing to point {model} {alias} at v{number}: {problem}. Run 'shoal doctor', then promote "
                "a version that verifies"
            )
        with self._write() as conn:
            model_id = self._model_id(conn, model, lock=True)
            current = conn.execute(
                select(t.aliases.c.version).where(t.aliases.c.model_id == model_id, t.aliases.c.alias == alias)
            ).scalar()
            values = dict(version=number, updated_at=now())
            if current is None:
                conn.execute(insert(t.aliases).values(model_id=model_id, alias=alias, **values))
            else:
                conn.execute(
                    update(t.aliases)
                    .where(t.aliases.c.model_id == model_id, t.aliases.c.alias == alias)
                    .values(**values)
                )
            conn.execute(
                insert(t.alias_history).values(
                    model_id=model_id,
                    alias=alias,
                    from_version=current,
                    to_version=number,
                    actor=actor,
                    reason=reason,
                    at=now(),
                )
            )
            self._event(
                conn,
                model_id,
                event_kind,
                reason,
                version=number,
                payload={"alias": alias, "from": current, "actor": actor, **(payload or {})},
            )
            if pipeline_scores:
                conn.execute(
                    insert(t.pipeline_scores),
                    [
                        dict(pipeline=pipeline, model=model, from_version=current, to_version=number, actor=actor)
                        | dict(record=record, at=now())
                        for pipeline, record in pipeline_scores
                    ],
                )
            checkpoint("promote")
        return current

    def alias_history(self, model: str, alias: str = PRODUCTION) -> list[AliasChange]:
        query = (
            select(t.alias_history, t.models.c.name)
            .join(t.models, t.models.c.id == t.alias_history.c.model_id)
            .where(t.models.c.name == model, t.alias_history.c.alias == alias)
            .order_by(t.alias_history.c.id)
        )
        with self._read() as conn:
            return [
                AliasChange(
                    row.name, row.alias, row.from_version, row.to_version, row.actor, row.reason, _aware(row.at)
                )  # type: ignore[arg-type]
                for row in conn.execute(query)
            ]

    def alias_lineage(self, model: str, alias: str = PRODUCTION) -> list[int]:
        """The versions `alias` held, newest first, without those rolled back from: the current one, then what
        a rollback would restore, and so on (a version promoted twice appears twice)."""
        stack: list[int] = []
        for change in self.alias_history(model, alias):
            if change.actor == "rollback":
                stack.pop()
            else:
                stack.append(change.to_version)
        return stack[::-1]

    def rollback(
        self,
        model: str,
        alias: str = PRODUCTION,
        *,
        pipeline_scores: Callable[[int], list[tuple[str, dict[str, Any]]]] | None = None,
    ) -> int:
        """Point `alias` back at the version it held before the current one was promoted (`pipeline_scores`: the
        scores judged with that version, written with the change as `set_alias` does).

        Rollbacks undo promotions like a stack: rolling back twice goes two promotions back.
        """
        stack = self.alias_lineage(model, alias)
        if len(stack) < 2:
            raise RegistryError(f"model {model!r} has no earlier {alias} version to roll back to")
        current, previous = stack[0], stack[1]
        self.set_alias(
            model,
            previous,
            alias=alias,
            actor="rollback",
            reason=f"rolled back from v{current} to v{previous}",
            event_kind="rolled_back",
            pipeline_scores=pipeline_scores(previous) if pipeline_scores is not None else None,
        )
        return previous
