"""A really full disk (a 1 MB tmpfs, filled up): `shoal ingest`, `shoal promote` and a training fail with one line
that names the disk and what to do, leave no temporary file and no half-written store (registry rows and files
agree), and succeed once there is room again. Needs root and `mount -t tmpfs`; skipped (and listed as NOT TESTED at
the end of the run) only where mounting is refused."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import DBAPIError

from conftest import POSTGRES_ENV, SKIP_POSTGRES, spam_model, write_rows
from processes import assert_store_consistent
from shoal.data.ingest import ingest_file
from shoal.registry.artifacts import OWNERS
from shoal.registry.database import disk_full
from shoal.serve.app import create_app
from shoal.train.trainer import train_models
from shoal.workspace import Workspace

SKIP_TMPFS = "cannot mount a tmpfs to fill up (needs root)"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs of our own, unmounted at the end whatever happens."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True, text=True, timeout=30
    )
    if mounted.returncode != 0:
        pytest.skip(f"{SKIP_TMPFS}: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], check=True, timeout=30)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill `disk` up with one file, then give `leave` bytes back; return the file."""
    filler = disk / "filler"
    handle = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(handle, b"\0" * 4096)
    except OSError as error:
        assert error.errno == errno.ENOSPC
    finally:
        os.close(handle)
    if leave:
        os.truncate(filler, max(filler.stat().st_size - leave, 0))
    return filler


def shoal(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shoal", *map(str, args)], capture_output=True, text=True, timeout=300)


def assert_one_line_naming(done: subprocess.CompletedProcess[str], disk: Path) -> None:
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"error: no space left on the disk holding {disk}"), line
    assert "Free space on that disk" in line and "nothing was stored" in line


def leftovers(disk: Path) -> list[Path]:
    """Temporary and staged files a failed write could have left."""
    staged = [p for folder in (".staging", OWNERS) for p in disk.rglob(f"{folder}/*")]
    return [*disk.rglob("*.tmp"), *staged]


def drop_files(ws: Workspace) -> list[str]:
    folder = ws.artifact_root / "data" / "spam"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def rows(sms: pd.DataFrame, tmp_path: Path) -> tuple[Path, Path]:
    return write_rows(tmp_path / "first.csv", sms.head(300)), write_rows(tmp_path / "second.csv", sms.iloc[300:3300])


@pytest.mark.timeout(600)  # trainings and fresh `shoal` processes: minutes on a loaded machine
def test_a_full_artifact_disk_fails_ingest_and_training_in_one_line_and_stores_nothing(
    make_workspace, small_disk: Path, rows: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = rows
    ws = make_workspace(
        {"spam": spam_model(families=["majority", "tfidf-logreg"], cv_folds=2)}, artifacts=str(small_disk / "a")
    )
    ingest_file(ws, "spam", first)
    stored = drop_files(ws)
    filler = fill(small_disk)

    done = shoal("ingest", "spam", second, "-w", ws.root)
    assert_one_line_naming(done, small_disk / "a" / "data" / "spam")
    assert leftovers(small_disk) == [] and drop_files(ws) == stored and len(ws.registry.drops("spam")) == 1
    # the same drop over HTTP: 507 with the same line, nothing stored
    monkeypatch.setenv("SHOAL_TOKEN", "t")
    rows = pd.read_csv(second).to_dict("records")
    with TestClient(create_app(ws)) as client:
        answer = client.post("/v1/models/spam/data", json={"rows": rows}, headers={"Authorization": "Bearer t"})
    assert answer.status_code == 507 and answer.json()["error"]["code"] == "insufficient_storage", answer.text
    assert "no space left on the disk holding" in answer.json()["error"]["message"]
    assert leftovers(small_disk) == [] and drop_files(ws) == stored and len(ws.registry.drops("spam")) == 1

    # a training with a little room (its staging owner record fits, a model does not): each family fails with
    # the disk named, nothing stays staged, no version row without its artifact
    filler.unlink()
    fill(small_disk, leave=8192)
    [report] = train_models(ws)
    errors = {c.family: c.error for c in report.candidates}
    assert all(e and e.startswith("StoreFull: no space left on the disk holding") for e in errors.values()), errors
    assert leftovers(small_disk) == [] and ws.registry.versions("spam") == []
    assert_store_consistent(ws, "spam")

    (small_disk / "filler").unlink()  # room again: the same commands succeed
    assert shoal("ingest", "spam", second, "-w", ws.root).returncode == 0
    assert len(ws.registry.drops("spam")) == 2 and len(drop_files(ws)) == 2
    [report] = train_models(ws)
    assert report.error is None and ws.registry.alias("spam") is not None
    assert_store_consistent(ws, "spam")


@pytest.mark.timeout(600)  # trainings and fresh `shoal` processes: minutes on a loaded machine
def test_a_full_registry_disk_fails_ingest_and_promote_in_one_line_and_changes_nothing(
    make_workspace, small_disk: Path, rows: tuple[Path, Path]
) -> None:
    first, second = rows
    database = small_disk / "registry.db"
    ws = make_workspace(
        {"spam": spam_model(families=["majority", "tfidf-logreg"], cv_folds=2)}, registry=f"sqlite:///{database}"
    )
    ingest_file(ws, "spam", first)
    assert train_models(ws)[0].error is None
    production = ws.registry.alias("spam")
    [other] = [v.number for v in ws.registry.versions("spam") if v.number != production]
    stored, history = drop_files(ws), ws.registry.alias_history("spam")
    ws.close()
    # room for SQLite to open the database (its 32 KB WAL index) but not for the new rows: the drop's file is
    # written on the other disk, the registry refuses its row, and the file is taken back
    filler = fill(small_disk, leave=36 * 1024)
    done = shoal("ingest", "spam", second, "-w", ws.root)
    assert_one_line_naming(done, database)
    assert drop_files(ws) == stored

    filler.unlink()
    filler = fill(small_disk)
    done = shoal("promote", "spam", other, "-w", ws.root)
    assert_one_line_naming(done, database)
    assert leftovers(small_disk) == [] and not list(ws.artifact_root.rglob("*.tmp"))

    filler.unlink()
    reopened = Workspace(ws.root)
    try:
        assert len(reopened.registry.drops("spam")) == 1 and reopened.registry.alias("spam") == production
        assert reopened.registry.alias_history("spam") == history
        assert shoal("promote", "spam", other, "-w", ws.root).returncode == 0
        assert shoal("ingest", "spam", second, "-w", ws.root).returncode == 0
        assert reopened.registry.alias("spam") == other and len(reopened.registry.drops("spam")) == 2
        assert_store_consistent(reopened, "spam")
    finally:
        reopened.close()


# A PostgreSQL server whose data disk is full refuses a write with SQLSTATE 53100 ("could not extend file ...: No
# space left on device"). Filling a real tablespace also makes the whole server's checkpoints fail while it is full
# (every other database's DROP DATABASE with them), so this test, which shares the server, has the server raise that
# very error from a trigger instead.
REFUSE_DROPS = """
CREATE FUNCTION refuse_as_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full';
END $$;
CREATE TRIGGER disk_full BEFORE INSERT ON drops FOR EACH ROW EXECUTE FUNCTION refuse_as_disk_full();
"""


def test_a_postgresql_server_out_of_disk_fails_ingest_in_one_line_and_stores_nothing(
    make_workspace, rows: tuple[Path, Path], tmp_path: Path
) -> None:
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(SKIP_POSTGRES)
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    first, _ = rows
    name = f"shoal_full_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        ws = make_workspace({"spam": spam_model(families=["majority"])}, registry=url)
        with ws.registry.engine.begin() as conn:
            conn.exec_driver_sql(REFUSE_DROPS)

        done = shoal("ingest", "spam", first, "-w", ws.root)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        [line] = done.stderr.strip().splitlines()
        assert line.startswith("error: the PostgreSQL server at 127.0.0.1 has no space left for the registry"), line
        assert "Free space on the server's data disk and retry" in line
        assert drop_files(ws) == [] and not list(ws.artifact_root.rglob("*.tmp"))  # the drop's file taken back
        assert ws.registry.drops("spam") == []

        with ws.registry.engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER disk_full ON drops")
        assert shoal("ingest", "spam", first, "-w", ws.root).returncode == 0
        assert len(ws.registry.drops("spam")) == 1 and len(drop_files(ws)) == 1
        ws.close()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_a_full_disk_met_outside_the_store_is_one_line_too(small_disk: Path, tmp_path: Path) -> None:
    """Any command's write to a full disk (a report, an export) is printed as one line (naming the file when the
    error does: a failed write(2) names none)."""
    from shoal.cli.common import error_line

    fill(small_disk)
    target = small_disk / "report.html"
    with pytest.raises(OSError) as raised:
        target.write_bytes(b"x" * 65536)
    assert error_line(raised.value, ()) == "no space left on the disk; free space on it and run the command again"
    named = OSError(errno.ENOSPC, "No space left on device", str(target))
    assert (
        error_line(named, ())
        == f"no space left on the disk writing {target}; free space on it and run the command again"
    )
    assert error_line(ValueError("a bug"), ()) is None  # unexpected errors keep their traceback


def test_a_registry_error_that_is_not_about_the_disk_stays_itself() -> None:
    """Errors the sqlite3 module raises itself (a closed connection, a bad parameter) carry no SQLite error code:
    they are not a full disk, and asking must not raise."""
    closed = sqlite3.connect(":memory:")
    closed.close()
    with pytest.raises(sqlite3.ProgrammingError) as raised:
        closed.execute("select 1")
    error = DBAPIError("select 1", None, raised.value)
    assert disk_full(error, "sqlite:///registry.db") is None
