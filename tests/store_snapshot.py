"""The whole store of a SQLite workspace as bytes, to show that something changed nothing: every row of every
registry table, the database file's bytes after a WAL checkpoint, and every file under `.shoal/`."""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

STORE = ".shoal"
DATABASE = "registry.db"


@dataclass(frozen=True)
class Store:
    tables: dict[str, list[tuple[object, ...]]]  # every row of every table, in rowid order
    database: str  # sha256 of the database file after a WAL checkpoint
    files: dict[str, str]  # every other file under .shoal/: relative path -> sha256


def snapshot(root: Path) -> Store:
    database = root / STORE / DATABASE
    with sqlite3.connect(database, timeout=30) as conn:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0, "the WAL checkpoint was blocked"
        names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        tables = {name: conn.execute(f'SELECT * FROM "{name}" ORDER BY rowid').fetchall() for name in names}
    conn.close()
    files = {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted((root / STORE).rglob("*"))
        if path.is_file() and not path.name.startswith(DATABASE)
    }
    return Store(tables, hashlib.sha256(database.read_bytes()).hexdigest(), files)


def assert_unchanged(before: Store, after: Store) -> None:
    for name in before.tables:
        assert after.tables[name] == before.tables[name], f"table {name} changed"
    assert after.tables.keys() == before.tables.keys()
    assert after.files == before.files
    assert after.database == before.database
