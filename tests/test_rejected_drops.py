"""A rejected drop changes nothing, for every rejection reason and through every entry point: `shoal ingest`,
`POST /v1/models/{name}/data` on a real server, and a worker processing the inbox folder. The whole store is
compared before and after: every row of every registry table, the database file's bytes after a WAL checkpoint,
and every file under `.shoal/` (path and hash) — no event either: the refusal shows in the CLI's error, the HTTP
422 body and the inbox's rejected/ folder. Each workspace starts with one accepted drop; its model refuses
relabelling (`relabel: reject`)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from conftest import FAST_WORKSPACE, read_csv, spam_model
from serve_fixtures import running
from shoal.cli import app
from shoal.data.errors import DropRejected
from shoal.data.ingest import ingest_file
from shoal.worker.inbox import REJECTED
from shoal.worker.logs import FIELDS
from shoal.worker.runner import Worker
from shoal.workspace import REGISTRY_ENV, Workspace
from store_snapshot import assert_unchanged, snapshot

MODEL = "spam"


def _rows(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode("utf-8")


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def _jsonl(records: list[dict[str, object]]) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode("utf-8")


def _arrow(**columns: pa.Array) -> bytes:
    """A Parquet file of exactly these Arrow columns (types pandas would not write by itself)."""
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


def _flipped(label: str) -> str:
    return "spam" if label == "ham" else "ham"


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
    empty_text, empty_label, outside, conflict, nul, relabel = (fresh.copy() for _ in range(6))
    empty_text.loc[2, "text"] = "   "
    empty_label.loc[3, "label"] = ""
    outside.loc[4, "label"] = "eggs"
    conflict.loc[7, "text"] = conflict.loc[1, "text"]
    conflict.loc[7, "label"] = _flipped(conflict.loc[1, "label"])
    nul.loc[2, "text"] = "a NUL \x00 inside"
    stored = sms.iloc[100]  # in the accepted drop: here with the other label
    relabel.loc[5, ["text", "label"]] = [stored["text"], _flipped(stored["label"])]

    def with_line_2(**row: object) -> bytes:
        return _jsonl([records[0], {**records[1], **row}, *records[2:]])

    texts, labels = pa.array(fresh["text"]), pa.array(fresh["label"])
    n = len(fresh)
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
        # a value that is not of its column's declared type (issue 12, defects 2 and 5)
        BadFile(
            "surrogate.jsonl", with_line_2(text="lone \ud800 surrogate"), "line 2: column 'text': a lone surrogate"
        ),
        BadFile("nul.csv", _rows(nul), "line 4: column 'text': a NUL character"),
        BadFile("surrogatekey.jsonl", with_line_2(**{"note\ud800": "x"}), "line 2: the column name 'note\\ud800'"),
        BadFile("number.jsonl", with_line_2(text=12345), "line 2: column 'text': a number (12345) where a text"),
        BadFile("infinity.jsonl", with_line_2(text=float("inf")), "line 2: not valid JSON: Infinity is not a JSON"),
        BadFile("boollabel.jsonl", with_line_2(label=True), "line 2: column 'label': a boolean (True) where a label"),
        BadFile("objlabel.jsonl", with_line_2(label={"a": 1}), "line 2: column 'label': an object where a label"),
        BadFile("inttext.parquet", _arrow(text=pa.array(range(n)), label=labels), "line 1: column 'text': a number"),
        BadFile(
            "floatlabel.parquet",
            _parquet(fresh.assign(label=[1.0, None] * (n // 2))),
            "line 1: column 'label': a number (1.0) where a label",
        ),
        BadFile(
            "binary.parquet",
            _arrow(text=pa.array([b"\xff\xfe not UTF-8"] * n), label=labels),
            "line 1: column 'text': binary data (bytes) where a text",
        ),
        BadFile(
            "timestamp.parquet",
            _arrow(text=pa.array([datetime(2024, 1, 1)] * n), label=labels),
            "line 1: column 'text': a timestamp",
        ),
        BadFile(
            "list.parquet",
            _arrow(text=pa.array([[t] for t in fresh["text"]]), label=labels),
            "line 1: column 'text': a list where",
        ),
        BadFile(
            "struct.parquet",
            _arrow(text=texts, label=pa.array([{"name": x} for x in fresh["label"]])),
            "line 1: column 'label': an object where",
        ),
        # a stored text given another label, under relabel: reject (issue 12, defect 6)
        BadFile("relabel.csv", _rows(relabel), "line 7: the text is already stored with label"),
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
    "surrogate.jsonl",
    "nul.csv",
    "surrogatekey.jsonl",
    "number.jsonl",
    "infinity.jsonl",
    "boollabel.jsonl",
    "objlabel.jsonl",
    "inttext.parquet",
    "floatlabel.parquet",
    "binary.parquet",
    "timestamp.parquet",
    "list.parquet",
    "struct.parquet",
    "relabel.csv",
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
            model = spam_model(labels=["ham", "spam"], relabel="reject", retrain={"on_new_data": False})
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
    assert "or pass --skip-invalid" in message  # what to do next, in the CLI's terms
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

    conflict = [*records[:5], {"text": records[1]["text"], "label": _flipped(records[1]["label"])}]
    stored = sms.iloc[100]  # in the accepted drop
    relabel = [*records[:3], {"text": stored["text"], "label": _flipped(stored["label"])}]

    def row_4(**row: object) -> bytes:
        return body([*records[:3], {"text": "hello there", "label": "ham", **row}])

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
        # JSON with a lone surrogate escape is not UTF-8 text: refused with the other bad bodies, with its position
        "lone surrogate": (row_4(text="lone \ud800 surrogate"), "invalid_request"),
        "NUL in text": (row_4(text="a NUL \x00 inside"), "drop_rejected"),
        "lone surrogate in a key": (row_4(**{"note\ud800": "x"}), "invalid_request"),
        "number as text": (row_4(text=12345), "drop_rejected"),
        "object as text": (row_4(text={"a": 1}), "drop_rejected"),
        "boolean label": (row_4(label=True), "drop_rejected"),
        "float label": (row_4(label=1.0), "drop_rejected"),
        "relabel a stored text": (body(relabel), "drop_rejected"),
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
    "lone surrogate",
    "NUL in text",
    "lone surrogate in a key",
    "number as text",
    "object as text",
    "boolean label",
    "float label",
    "relabel a stored text",
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
    error = response.json()["error"]
    assert error["code"] == code
    if code == "drop_rejected":
        assert error["problems"] and "--skip-invalid" not in error["message"]  # a CLI flag means nothing here
        assert "send the request again" in error["message"]
    assert_unchanged(before, snapshot(ws.root))


# --- the inbox, processed by a worker -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker(workspace) -> Worker:
    """One worker for the inbox cases (it creates its prediction-log tables when it starts, before any case)."""
    return Worker(workspace("inbox"), worker_id="w1", settle_seconds=0.05)


@pytest.mark.parametrize("case", FILE_CASES)
def test_inbox_rejection_changes_nothing_but_moves_the_file(
    worker: Worker, files, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The file moves to rejected/ beside its reason (outside the store), once: the store does not change at all,
    and the warning logged names the file and line but quotes nothing of the file."""
    ws = worker.ws
    inbox = ws.inbox(MODEL)
    bad = write(inbox, files[case])
    before = snapshot(ws.root)
    with caplog.at_level(logging.INFO, logger="shoal.worker"):
        worker.run(once=True)
    assert_unchanged(before, snapshot(ws.root))

    assert not bad.exists() and (inbox / REJECTED / bad.name).read_bytes() == files[case].content
    reason = (inbox / REJECTED / f"{bad.name}.error.txt").read_text(encoding="utf-8")
    assert files[case].reason in reason and "nothing was written" in reason
    assert "put it in the inbox again" in reason and "--skip-invalid" not in reason
    [record] = [r for r in caplog.records if r.getMessage() == "inbox_rejected"]
    fields = record.__dict__[FIELDS]
    assert fields["file"] == bad.name and fields["problems"] >= 1
    assert files[case].reason not in str(fields)  # a reason may quote the file's text: it stays out of the log


def test_a_rejected_first_drop_creates_nothing(sms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12: a refused `shoal ingest` into a workspace with no data yet created the registry database."""
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    fleet = {"workspace": FAST_WORKSPACE, "models": {MODEL: spam_model()}}
    (tmp_path / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(_jsonl([{"text": "lone \ud800 surrogate", "label": "ham"}]))
    ws = Workspace(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert "a lone surrogate" in ingest(ws, bad)
    assert sorted(tmp_path.rglob("*")) == before
    ws.close()
