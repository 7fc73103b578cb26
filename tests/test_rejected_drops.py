"""A rejected drop changes nothing, for every rejection reason and through every entry point: `shoal ingest`,
`POST /v1/models/{name}/data` on a real server, and a worker processing the inbox folder. The whole store is
compared before and after: every row of every registry table, the database file's bytes after a WAL checkpoint,
and every file under `.shoal/` (path and hash). Each workspace starts with one accepted drop."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import FAST_WORKSPACE, read_csv, spam_model
from serve_fixtures import running
from shoal.cli import app
from shoal.data.errors import DropRejected
from shoal.data.ingest import ingest_file
from shoal.worker.inbox import REJECTED
from shoal.worker.runner import Worker
from shoal.workspace import REGISTRY_ENV, Workspace

MODEL = "spam"
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


def _rows(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode("utf-8")


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def _jsonl(records: list[dict[str, str]]) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode("utf-8")


@dataclass(frozen=True)
class BadFile:
    name: str
    content: bytes
    reason: str  # what the rejection must say


def bad_files(sms: pd.DataFrame) -> dict[str, BadFile]:
    """One file per rejection reason, built from rows not in the store yet (were one accepted, the store would
    change)."""
    fresh = sms.iloc[300:320].reset_index(drop=True)
    records = fresh.to_dict("records")
    empty_text, empty_label, outside, conflict = (fresh.copy() for _ in range(4))
    empty_text.loc[2, "text"] = "   "
    empty_label.loc[3, "label"] = ""
    outside.loc[4, "label"] = "eggs"
    conflict.loc[7, "text"] = conflict.loc[1, "text"]
    conflict.loc[7, "label"] = "spam" if conflict.loc[1, "label"] == "ham" else "ham"
    wrong_count = _rows(fresh.head(3)) + b"one,two,three\n"
    unterminated = _rows(fresh.head(3)) + b'"a quote never closed,ham\nnext,spam\n'
    oversized = _rows(fresh.head(3)) + b'"' + b"x" * 200_000 + b'",ham\n'
    cases = [
        BadFile("empty.csv", b"", "the file is empty"),
        BadFile("header.csv", b"text,label\n", "the file has no rows"),
        BadFile("blank.jsonl", b"\n\n", "missing column(s) text, label"),
        BadFile("fields.csv", wrong_count, "line 5: 3 fields where the header has 2"),
        BadFile("quote.csv", unterminated, "line 5: 1 fields where the header has 2"),
        BadFile("huge.csv", oversized, "malformed ','-separated row: field larger than field limit"),
        BadFile("fields.tsv", b"text\tlabel\nhello\tham\textra\n", "line 2: 3 fields where the header has 2"),
        BadFile("broken.jsonl", _jsonl(records[:2]) + b'\n{"text": "no end', "line 3: not valid JSON"),
        BadFile("list.jsonl", _jsonl(records[:2]) + b'\n["hello", "ham"]', "line 3: each line must be a JSON object"),
        BadFile("broken.parquet", b"PAR1" + b"\x00garbage" * 50 + b"PAR1", "not a readable Parquet file"),
        BadFile("notext.parquet", _parquet(fresh.rename(columns={"text": "body"})), "missing column(s) text"),
        BadFile("nolabel.csv", _rows(fresh.drop(columns=["label"])), "missing column(s) label"),
        BadFile("emptytext.csv", _rows(empty_text), "line 4: empty text in column 'text'"),
        BadFile("emptylabel.jsonl", _jsonl(empty_label.to_dict("records")), "line 4: empty label in column 'label'"),
        BadFile("latin1.csv", b"text,label\nhi,ham\nbad \xff\xfe bytes,spam\n", "line 3: bytes that are not UTF-8"),
        BadFile("eggs.csv", _rows(outside), "line 6: label 'eggs' is not in the declared labels"),
        BadFile("twolabels.parquet", _parquet(conflict), "line 8: the same text is labelled"),
    ]
    return {case.name: case for case in cases}


FILE_CASES = [
    "empty.csv",
    "header.csv",
    "blank.jsonl",
    "fields.csv",
    "quote.csv",
    "huge.csv",
    "fields.tsv",
    "broken.jsonl",
    "list.jsonl",
    "broken.parquet",
    "notext.parquet",
    "nolabel.csv",
    "emptytext.csv",
    "emptylabel.jsonl",
    "latin1.csv",
    "eggs.csv",
    "twolabels.parquet",
]


@pytest.fixture(scope="module")
def sms() -> pd.DataFrame:
    return read_csv("sms_spam/sms_spam.csv")


@pytest.fixture(scope="module")
def files(sms: pd.DataFrame) -> dict[str, BadFile]:
    made = bad_files(sms)
    assert sorted(made) == sorted(FILE_CASES)
    return made


@pytest.fixture(scope="module")
def workspace(sms: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Workspace]]:
    """`workspace(entry)`: a workspace per entry point with one accepted drop (no retrain on new data, so a
    worker's scan writes nothing of its own)."""
    made: dict[str, Workspace] = {}

    def make(entry: str) -> Workspace:
        if entry not in made:
            root = tmp_path_factory.mktemp(entry)
            model = spam_model(labels=["ham", "spam"], retrain={"on_new_data": False})
            fleet = {"workspace": FAST_WORKSPACE, "models": {MODEL: model}}
            (root / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
            ws = Workspace(root)
            good = root / "accepted.csv"
            sms.iloc[100:300].to_csv(good, index=False)
            assert ingest_file(ws, MODEL, good).created
            assert snapshot(root).files, "the accepted drop wrote no files"
            made[entry] = ws
        return made[entry]

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(REGISTRY_ENV, raising=False)
        yield make
    for ws in made.values():
        ws.close()


def write(folder: Path, bad: BadFile) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / bad.name
    path.write_bytes(bad.content)
    return path


def assert_unchanged(before: Store, after: Store, *, database_bytes: bool = True) -> None:
    for name in before.tables:
        assert after.tables[name] == before.tables[name], f"table {name} changed"
    assert after.tables.keys() == before.tables.keys()
    assert after.files == before.files
    if database_bytes:
        assert after.database == before.database


# --- shoal ingest ---------------------------------------------------------------------------------------------


def ingest(ws: Workspace, path: Path, *extra: str) -> str:
    """`shoal ingest` in-process (a subprocess per case would cost seconds of imports each); returns the error."""
    result = CliRunner().invoke(app, ["ingest", MODEL, str(path), "-w", str(ws.root), *extra])
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, DropRejected), repr(result.exception)
    return str(result.exception)


@pytest.mark.parametrize("case", FILE_CASES)
def test_cli_rejection_changes_nothing(workspace, files, case: str, tmp_path: Path) -> None:
    ws = workspace("cli")
    bad = write(tmp_path, files[case])
    before = snapshot(ws.root)
    message = ingest(ws, bad)
    assert bad.name in message and files[case].reason in message and "nothing was written" in message
    assert_unchanged(before, snapshot(ws.root))


def test_cli_no_valid_rows_left_and_unknown_type_change_nothing(workspace, sms, tmp_path: Path) -> None:
    ws = workspace("cli")
    all_bad = sms.iloc[300:305].assign(label="")
    none_left = tmp_path / "none_left.csv"
    all_bad.to_csv(none_left, index=False)
    odd = tmp_path / "data.xlsx"
    odd.write_bytes(_rows(sms.iloc[300:305]))
    before = snapshot(ws.root)
    assert "no valid rows left" in ingest(ws, none_left, "--skip-invalid")
    assert "unknown file type '.xlsx'" in ingest(ws, odd)
    assert_unchanged(before, snapshot(ws.root))


# --- POST /v1/models/{name}/data on a real server -----------------------------------------------------------


def http_cases(sms: pd.DataFrame) -> dict[str, tuple[bytes, str]]:
    """Raw request bodies the data endpoint must refuse, with the error code it must answer (422, except a body
    that is not UTF-8: FastAPI cannot parse it, 400)."""
    fresh = sms.iloc[300:320].reset_index(drop=True)
    records = fresh.to_dict("records")

    def body(rows: list[dict[str, object]], **extra: object) -> bytes:
        return json.dumps({"rows": rows, **extra}).encode("utf-8")

    conflict = [*records[:5], {"text": records[1]["text"], "label": "spam" if records[1]["label"] == "ham" else "ham"}]
    return {
        "no rows": (body([]), "invalid_request"),
        "not JSON": (b'{"rows": [{"text": "no end"', "invalid_request"),
        "non-UTF-8 body": (b'{"rows": [{"text": "bad \xff\xfe bytes", "label": "ham"}]}', "invalid_request"),
        "a row is not an object": (body([*records[:2], "hello"]), "invalid_request"),  # type: ignore[list-item]
        "unknown split": (body(records, split="sideways"), "invalid_request"),
        "unknown field": (body(records, labels=["ham"]), "invalid_request"),
        "missing column": (body([{"text": r["text"]} for r in records]), "drop_rejected"),
        "empty text": (body([*records[:3], {"text": " ", "label": "ham"}]), "drop_rejected"),
        "empty label": (body([*records[:3], {"text": "hello there", "label": ""}]), "drop_rejected"),
        "null label": (body([*records[:3], {"text": "hello there", "label": None}]), "drop_rejected"),
        "label outside labels": (body([*records[:3], {"text": "hello there", "label": "eggs"}]), "drop_rejected"),
        "one text two labels": (body(conflict), "drop_rejected"),
    }


HTTP_CASES = [
    "no rows",
    "not JSON",
    "non-UTF-8 body",
    "a row is not an object",
    "unknown split",
    "unknown field",
    "missing column",
    "empty text",
    "empty label",
    "null label",
    "label outside labels",
    "one text two labels",
]


@pytest.fixture(scope="module")
def server(workspace) -> Iterator[tuple[Workspace, str]]:
    ws = workspace("http")
    with running(ws, wait_ready=False) as url:
        yield ws, url


@pytest.mark.parametrize("case", HTTP_CASES)
def test_http_rejection_changes_nothing(server, sms, case: str) -> None:
    ws, url = server
    content, code = http_cases(sms)[case]
    before = snapshot(ws.root)
    response = httpx.post(
        f"{url}/v1/models/{MODEL}/data", content=content, headers={"content-type": "application/json"}, timeout=60
    )
    assert response.status_code == 422, response.text  # a body that is not UTF-8 JSON too (the reason says which)
    assert response.json()["error"]["code"] == code
    assert_unchanged(before, snapshot(ws.root))


# --- the inbox, processed by a worker -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker(workspace) -> Worker:
    """One worker for the inbox cases (it creates its prediction-log tables when it starts, before any case)."""
    return Worker(workspace("inbox"), worker_id="w1", settle_seconds=0.05)


@pytest.mark.parametrize("case", FILE_CASES)
def test_inbox_rejection_changes_nothing_but_moves_the_file(worker: Worker, files, case: str) -> None:
    """The file moves to rejected/ beside its reason (outside the store); in the store, the one change is the
    `drop_rejected` event that puts the rejection in the model's history."""
    ws = worker.ws
    inbox = ws.inbox(MODEL)
    bad = write(inbox, files[case])
    before = snapshot(ws.root)
    worker.run(once=True)
    after = snapshot(ws.root)

    assert not bad.exists() and (inbox / REJECTED / bad.name).read_bytes() == files[case].content
    reason = (inbox / REJECTED / f"{bad.name}.error.txt").read_text(encoding="utf-8")
    assert files[case].reason in reason and "nothing was written" in reason
    added = after.tables["events"][len(before.tables["events"]) :]
    assert after.tables["events"][: len(before.tables["events"])] == before.tables["events"]
    assert len(added) == 1 and "drop_rejected" in added[0] and any(bad.name in str(v) for v in added[0]), added
    assert_unchanged(
        before, replace(after, tables={**after.tables, "events": before.tables["events"]}), database_bytes=False
    )
