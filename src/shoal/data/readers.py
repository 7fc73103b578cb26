"""Read a data file (CSV, TSV, JSONL, Parquet) into string columns, keeping each row's line number."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd

from shoal.data.errors import DropRejected, Problem

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
LINE = "__line__"


def _decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DropRejected(
            source,
            [Problem(line, f"bytes that are not UTF-8 ({error.reason} at byte {error.start}); save the file as UTF-8")],
        ) from None


def _delimited(text: str, delimiter: str, source: str) -> pd.DataFrame:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DropRejected(source, [Problem(None, "the file is empty")]) from None
    rows, lines = [], []
    start = reader.line_num + 1
    try:
        for record in reader:
            if not record:
                start = reader.line_num + 1
                continue
            if len(record) != len(header):
                raise DropRejected(source, [Problem(start, f"{len(record)} fields where the header has {len(header)}")])
            rows.append(record)
            lines.append(start)
            start = reader.line_num + 1
    except csv.Error as error:
        raise DropRejected(
            source, [Problem(reader.line_num, f"malformed {delimiter!r}-separated row: {error}")]
        ) from None
    frame = pd.DataFrame(rows, columns=header, dtype=object)
    frame[LINE] = lines
    return frame


def _jsonl(text: str, source: str) -> pd.DataFrame:
    records, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DropRejected(source, [Problem(number, f"not valid JSON: {error.msg}")]) from None
        if not isinstance(record, dict):
            raise DropRejected(source, [Problem(number, "each line must be a JSON object")])
        records.append(record)
        lines.append(number)
    frame = pd.DataFrame.from_records(records)
    frame[LINE] = lines
    return frame


def read_table(path: Path, *, source: str | None = None) -> pd.DataFrame:
    """The file's rows with an extra `__line__` column (the 1-based line, or row for Parquet)."""
    source = source or str(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DropRejected(
            source, [Problem(None, f"unknown file type {path.suffix!r}; use one of {', '.join(sorted(FORMATS))}")]
        )
    if kind == "parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as error:  # pyarrow raises many types for a broken file
            raise DropRejected(source, [Problem(None, f"not a readable Parquet file: {error}")]) from None
        frame[LINE] = range(1, len(frame) + 1)
        return frame
    text = _decode(path.read_bytes(), source)
    if kind == "jsonl":
        return _jsonl(text, source)
    return _delimited(text, "," if kind == "csv" else "\t", source)
