"""Fuzzing the data path (issue 12): the CSV, TSV, JSONL and Parquet readers and every task's `validate`.

The property, for every generated input: it is either accepted with typed, valid, storable rows, or rejected with
`DropRejected` — never another exception — and a rejected file leaves the store byte for byte as it was.

Hypothesis runs deterministically in CI (`derandomize=True`, no example database), with a bounded number of
examples per test (`EXAMPLES`): the whole file tries about 2,000 inputs and runs in well under a minute on a
loaded 2-core machine. `SHOAL_FUZZ_EXAMPLES=<n>` multiplies the budget for a longer run by hand.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FAST_WORKSPACE
from shoal.data.errors import DropRejected
from shoal.data.ingest import content_hash, ingest_file
from shoal.data.readers import LINE, read_table, records_frame
from shoal.fleet import ModelSpec
from shoal.tasks import get_task, model_specs
from shoal.tasks.regression.kind import TARGET
from shoal.tasks.text_classification import normalize
from shoal.workspace import REGISTRY_ENV, Workspace
from store_snapshot import assert_unchanged, snapshot

SCALE = int(os.environ.get("SHOAL_FUZZ_EXAMPLES", "1"))


def fuzz(examples: int) -> Callable[[Any], Any]:
    """Deterministic, bounded hypothesis settings (the same inputs on every run; no database)."""
    return settings(
        max_examples=examples * SCALE,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


# --- the tasks' specs ---------------------------------------------------------------------------------------

SPECS: dict[str, dict[str, Any]] = {
    "text-classification": {"families": ["majority"], "metric": "accuracy"},
    "text-classification/labels+reject": {
        "families": ["majority"],
        "metric": "accuracy",
        "labels": ["a", "b", "1"],
        "relabel": "reject",
    },
    "regression": {"target_column": "y", "families": ["mean"], "metric": "mae"},
    "forecasting": {"id_column": "id", "time_column": "t", "value_column": "v", "freq": "h", "horizon": 1},
    "forecasting/single": {"time_column": "t", "value_column": "v", "freq": "D", "horizon": 1, "max_gap": 3},
    "embedding": {"families": ["static-embed"], "metric": "spearman"},
}


def make_spec(name: str) -> ModelSpec:
    task = name.split("/")[0]
    return model_specs()[task].model_validate({"task": task, **SPECS[name]})


SPEC_NAMES = list(SPECS)
#: every column name a spec above reads, plus names that trip readers and schemas
NAMES = ["text", "label", "y", "x", "c", "t", "v", "id", "text_pair", "score", "", "split", "key", "__target__"]


# --- what an accepted drop must be --------------------------------------------------------------------------


def storable(text: object) -> bool:
    if not isinstance(text, str) or "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def finite(values: pd.Series) -> bool:
    return values.dtype == np.float64 and bool(np.isfinite(values.to_numpy()).all())


def check_accepted(task: str, rows: pd.DataFrame) -> None:
    """Typed, valid rows, and storable as the registry stores them (hashed as CSV, written as Parquet)."""
    assert len(rows) > 0
    if task == "text-classification":
        assert list(rows.columns) == ["text", "label"]
        assert all(storable(t) and t.strip() for t in rows["text"])
        assert all(storable(label) and label.strip() for label in rows["label"])
        assert rows.groupby(rows["text"].map(normalize))["label"].nunique().max() == 1
    elif task == "regression":
        assert finite(rows[TARGET])
        for column in rows.columns.drop(TARGET):
            assert storable(column) and not column.startswith("__") and column not in ("split", "key")
            values = rows[column]
            if values.dtype != np.float64:
                assert all(v is None or storable(v) for v in values), column
            else:
                assert not np.isinf(values.to_numpy()).any()
    elif task == "forecasting":
        assert list(rows.columns) == ["series", "ds", "y"]
        assert all(storable(s) for s in rows["series"])
        assert pd.api.types.is_datetime64_dtype(rows["ds"]) and not rows["ds"].isna().any()
        assert finite(rows["y"])
    else:
        assert list(rows.columns) == ["text", "text_pair", "score"]
        assert all(storable(t) and t.strip() for t in [*rows["text"], *rows["text_pair"]])
        assert finite(rows["score"])
    content_hash(rows)
    rows.to_parquet(io.BytesIO(), index=False)


def validate_twice(name: str, frame: pd.DataFrame, extra: pd.DataFrame | None = None) -> None:
    """Validate `frame` as a first drop and, if accepted, `extra` (or the frame itself) as a later drop against it
    (stored rows read back from Parquet, as the registry does): the stored-data checks run too."""
    task = get_task(name.split("/")[0])
    spec = make_spec(name)
    for skip in (False, True):
        try:
            first = task.validate(frame.copy(), spec, "fuzz", skip_invalid=skip).frame
        except DropRejected:
            continue
        check_accepted(task.name, first)
        first["split"] = task.assign_split(first, "auto", 0.3)
        buffer = io.BytesIO()
        first.to_parquet(buffer, index=False)
        stored = pd.read_parquet(io.BytesIO(buffer.getvalue()))
        again = frame if extra is None else extra
        with contextlib.suppress(DropRejected):
            check_accepted(task.name, task.validate(again.copy(), spec, "fuzz", skip_invalid=skip, stored=stored).frame)


# --- values --------------------------------------------------------------------------------------------------

#: characters that broke or might break a reader: line and field separators, quotes, NUL, a lone surrogate, BOM
TRICKY = ["\n", "\r", "\r\n", "\u2028", "\u2029", "\x85", "\x00", ",", "\t", '"', "\\", "\ud800", "\udfff", "\ufeff"]
texts = st.one_of(
    st.text(max_size=12),
    st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=8),  # with lone surrogates
    st.lists(st.one_of(st.sampled_from(TRICKY), st.text(max_size=3)), max_size=5).map("".join),
    st.sampled_from(["a", "b", "1", "1.0", "NA", "null", "inf", "-1e3", "2024-01-01", "2024-01-01T05:00+02:00", " "]),
)
scalars = st.one_of(
    texts,
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and ±inf included
    st.booleans(),
    st.none(),
    st.binary(max_size=6),
    st.datetimes(timezones=st.sampled_from([None, UTC])),
    st.dates(),
    st.decimals(allow_nan=True),
)
values = st.one_of(scalars, st.lists(scalars, max_size=2), st.dictionaries(st.text(max_size=2), scalars, max_size=2))
json_values = st.recursive(
    st.one_of(texts, st.integers(), st.floats(), st.booleans(), st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(texts, inner, max_size=2)),
    max_leaves=4,
)


def rows_of(cells: st.SearchStrategy[Any], names: list[str] | None = None) -> st.SearchStrategy[list[dict]]:
    keys = st.sampled_from(names or NAMES)
    return st.lists(st.dictionaries(keys, cells, max_size=6), min_size=1, max_size=6)


def good_rows(name: str) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Rows of the right shape for a spec, with values that are often right and sometimes not: deeper paths."""
    label = st.one_of(st.sampled_from(["a", "b"]), st.integers(0, 2), values)
    number = st.one_of(st.floats(-1e6, 1e6), st.integers(-100, 100), st.sampled_from(["3.5", "NA", "x"]), values)
    stamp = st.one_of(
        st.integers(0, 200).map(lambda h: f"2024-01-01T00:00:00+{h % 24:02d}:00" if h > 150 else f"{h}"),
        st.integers(0, 60).map(lambda h: pd.Timestamp("2024-01-01") + pd.Timedelta(hours=h)),
        st.integers(0, 60).map(lambda d: (date(2024, 1, 1) + pd.Timedelta(days=d)).isoformat()),
        values,
    )
    words = st.one_of(st.sampled_from(["a cat", "a dog", "the sun", "A CAT "]), texts, values)
    columns = {
        "text-classification": {"text": words, "label": label},
        "regression": {"x": number, "c": st.one_of(st.sampled_from(["p", "q"]), values), "y": number},
        "forecasting": {"id": st.one_of(st.sampled_from(["s1", "s2"]), values), "t": stamp, "v": number},
        "embedding": {"text": words, "text_pair": words, "score": number},
    }[name.split("/")[0]]
    if name == "forecasting/single":
        columns = {"t": stamp, "v": number}
    extra = {name: number for name in ("key", "split", "", "__line", "x\ud800")}  # columns no task reads
    return st.lists(st.fixed_dictionaries(columns, optional=extra), min_size=1, max_size=8)


# --- the readers -------------------------------------------------------------------------------------------


def read_bytes(tmp: Path, suffix: str, content: bytes) -> pd.DataFrame | None:
    """read_table on a file with these bytes: its frame, or None when it was rejected (never another error)."""
    path = tmp / f"fuzz{suffix}"
    path.write_bytes(content)
    try:
        frame = read_table(path)
    except DropRejected as error:
        assert error.problems and str(error)
        str(error).encode("utf-8")  # printable, whatever the input
        return None
    lines = frame[LINE].tolist()
    assert lines == sorted(set(lines)) and all(isinstance(n, int) and n >= 1 for n in lines)
    assert all(frame[c].dtype == object for c in frame.columns if c != LINE)
    return frame


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def to_csv(rows: list[dict[str, Any]], delimiter: str) -> bytes:
    names = list(dict.fromkeys(k for r in rows for k in r))
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(names)
    writer.writerows([["" if r.get(n) is None else str(r.get(n)) for n in names] for r in rows])
    return out.getvalue().encode("utf-8", "surrogatepass")  # a surrogate is written as invalid UTF-8


def to_jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "\n".join(json.dumps(r, default=str) for r in rows).encode("utf-8")  # NaN/Infinity as JS would


@fuzz(300)
@given(content=st.binary(max_size=200), suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".parquet"]))
def test_readers_take_any_bytes(tmp: Path, content: bytes, suffix: str) -> None:
    read_bytes(tmp, suffix, content)


@fuzz(150)
@given(
    rows=rows_of(json_values),
    form=st.sampled_from(["csv", "tsv", "jsonl"]),
    name=st.sampled_from(SPEC_NAMES),
    crlf=st.booleans(),
)
def test_text_files_are_read_and_validated_or_rejected(
    tmp: Path, rows: list[dict], form: str, name: str, crlf: bool
) -> None:
    content = to_jsonl(rows) if form == "jsonl" else to_csv(rows, "," if form == "csv" else "\t")
    if crlf:
        content = content.replace(b"\n", b"\r\n")
    frame = read_bytes(tmp, f".{form}", content)
    if frame is not None:
        validate_twice(name, frame)


ARROW_TYPES: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "int": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "float": (pa.float64(), st.floats()),
    "string": (pa.string(), texts.filter(storable)),
    "binary": (pa.binary(), st.binary(max_size=6)),
    "bool": (pa.bool_(), st.booleans()),
    "timestamp": (pa.timestamp("us"), st.datetimes(min_value=datetime(1, 1, 2))),
    "timestamp_tz": (pa.timestamp("ns", tz="UTC"), st.integers(-(2**62), 2**62).map(pd.Timestamp)),
    "date": (pa.date32(), st.dates()),
    "decimal": (pa.decimal128(10, 3), st.decimals(min_value=-1e6, max_value=1e6, places=3, allow_nan=False)),
    "list": (pa.list_(pa.int64()), st.lists(st.integers(-5, 5), max_size=2)),
    "struct": (pa.struct([("a", pa.string())]), st.fixed_dictionaries({"a": st.sampled_from(["x", "y"])})),
}


@st.composite
def parquet_tables(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(0, 6))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    columns = {}
    for name in names:
        arrow_type, cells = ARROW_TYPES[draw(st.sampled_from(sorted(ARROW_TYPES)))]
        column = draw(st.lists(st.one_of(st.none(), cells), min_size=n, max_size=n))
        columns[name] = pa.array(column, type=arrow_type)
    return pa.table(columns)


@fuzz(150)
@given(table=parquet_tables(), name=st.sampled_from(SPEC_NAMES))
def test_parquet_files_of_any_column_types_are_read_and_validated_or_rejected(
    tmp: Path, table: pa.Table, name: str
) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    frame = read_bytes(tmp, ".parquet", buffer.getvalue())
    assert frame is not None and len(frame) == table.num_rows
    for column in table.column_names:  # every cell as its Parquet type: an int with a null stays an int
        assert frame[column].tolist() == table.column(column).to_pylist()
    validate_twice(name, frame)


# --- every task's validate -----------------------------------------------------------------------------------


@fuzz(250)
@given(data=st.data(), name=st.sampled_from(SPEC_NAMES))
def test_every_task_validates_or_rejects_any_rows(data: st.DataObject, name: str) -> None:
    """Rows as HTTP sends them (any JSON-like or Python value) and rows of the right shape with wrong values."""
    first, later = (data.draw(st.one_of(rows_of(values), good_rows(name))) for _ in range(2))
    try:  # the rows' frame: a key that cannot be a column name is refused here
        frame, again = (records_frame(rows, list(range(1, len(rows) + 1)), "fuzz") for rows in (first, later))
    except DropRejected:
        return
    validate_twice(name, frame, again)


# --- end to end: a rejected file changes nothing ---------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("store")
    models = {"m": {"task": "text-classification", **SPECS["text-classification/labels+reject"]}}
    fleet = {"workspace": FAST_WORKSPACE, "models": models}
    (root / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(REGISTRY_ENV, raising=False)
        ws = Workspace(root)
        first = root / "first.csv"
        first.write_text("text,label\nthe first text,a\nthe second text,b\n", encoding="utf-8")
        ingest_file(ws, "m", first)
        yield ws
        ws.close()


@fuzz(60)
@given(rows=good_rows("text-classification"), form=st.sampled_from(["csv", "jsonl", "parquet"]))
def test_a_rejected_file_leaves_the_store_byte_for_byte(workspace: Workspace, rows: list[dict], form: str) -> None:
    path = workspace.root / f"drop.{form}"
    if form == "parquet":
        try:
            table = pa.Table.from_pylist(rows)
        except (pa.ArrowException, OverflowError, TypeError, UnicodeEncodeError):
            return  # rows Arrow cannot hold (a mix of types in a column, a lone surrogate): no Parquet file to try
        pq.write_table(table, path)
    else:
        path.write_bytes(to_jsonl(rows) if form == "jsonl" else to_csv(rows, ","))
    before = snapshot(workspace.root)
    try:
        result = ingest_file(workspace, "m", path)
    except DropRejected:
        assert_unchanged(before, snapshot(workspace.root))
        return
    check_accepted("text-classification", workspace.registry.load_drops([result.drop]).drop(columns="split"))
