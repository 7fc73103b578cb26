"""Read a data file (CSV, TSV, JSONL, Parquet, CoNLL) into columns of raw values, keeping each row's line number.

Every value stays what the file says it is — a string from CSV/TSV, a JSON value from JSONL, the Python value of a
Parquet cell (int, float, str, bytes, datetime, list, dict ...) — in columns of dtype object: nothing is converted
here, so the task's declared column types (`shoal.tasks.columns`) see the real value and can refuse a wrong one.
Anything a reader cannot make sense of is a `DropRejected` with the line and the reason.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from shoal.data.errors import DropRejected, Problem
from shoal.data.text import text_problem

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".conll": "conll",
}
LINE = "__line__"
#: `DataFrame.attrs` key set by the CoNLL reader: a row's token k is on line `__line__ + k`
ONE_TOKEN_PER_LINE = "one_token_per_line"


def _decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DropRejected(
            source,
            [Problem(line, f"bytes that are not UTF-8 ({error.reason} at byte {error.start}); save the file as UTF-8")],
        ) from None


def _check_names(names: Iterable[str], source: str, line: int | None) -> None:
    """A header must name each column once, in a name that can be stored, and not use the name shoal keeps for
    line numbers."""
    seen: set[str] = set()
    for name in names:
        problem = text_problem(name)
        if problem is not None:
            raise DropRejected(source, [Problem(line, f"the column name {name!r}: {problem}")])
        if name == LINE:
            raise DropRejected(source, [Problem(line, f"the column name {LINE!r} is reserved; rename that column")])
        if name in seen:
            raise DropRejected(source, [Problem(line, f"the column {name!r} appears twice in the header")])
        seen.add(name)


def _frame(columns: dict[str, list[Any]], lines: list[int]) -> pd.DataFrame:
    """Object columns (no dtype inference: a value stays the type it was read as) plus the line numbers."""
    index = pd.RangeIndex(len(lines))
    frame = pd.DataFrame(
        {name: pd.Series(values, index=index, dtype=object) for name, values in columns.items()}, index=index
    )
    frame[LINE] = lines
    return frame


def records_frame(records: list[dict[str, Any]], lines: list[int], source: str) -> pd.DataFrame:
    """JSON objects as rows (a key a row lacks is a missing value): the JSONL reader's and the HTTP rows' frame."""
    names: dict[str, int] = {}  # each key and the line it first appears on
    for record, line in zip(records, lines, strict=True):
        for key in record:
            names.setdefault(key, line)
    for name, line in names.items():
        _check_names([name], source, line)
    return _frame({name: [record.get(name) for record in records] for name in names}, lines)


def _delimited(text: str, delimiter: str, source: str) -> pd.DataFrame:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        try:
            header = next(reader)
        except StopIteration:
            raise DropRejected(source, [Problem(None, "the file is empty")]) from None
        _check_names(header, source, reader.line_num)
        rows, lines = [], []
        start = reader.line_num + 1
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
    return _frame({name: [row[i] for row in rows] for i, name in enumerate(header)}, lines)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value (write a number, or null for a missing value)")


def _lines(text: str) -> Iterable[tuple[int, str]]:
    """Numbered lines split on '\\n' only (a '\\r' before it is dropped): U+2028, U+2029 and U+0085 are characters of
    a JSON string, not line breaks, and must not shift the line numbers."""
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line.removesuffix("\r")


def _jsonl(text: str, source: str) -> pd.DataFrame:
    records, lines = [], []
    for number, line in _lines(text):
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_constant=_not_json)
        except json.JSONDecodeError as error:
            raise DropRejected(source, [Problem(number, f"not valid JSON: {error.msg}")]) from None
        except ValueError as error:  # NaN / Infinity, or an integer too long to read
            raise DropRejected(source, [Problem(number, f"not valid JSON: {error}")]) from None
        except RecursionError:
            raise DropRejected(source, [Problem(number, "not valid JSON: nested too deeply")]) from None
        if not isinstance(record, dict):
            raise DropRejected(source, [Problem(number, "each line must be a JSON object")])
        records.append(record)
        lines.append(number)
    return records_frame(records, lines, source)


def _conll(text: str, source: str) -> pd.DataFrame:
    """One row per sentence (`tokens`, `tags`: lists of strings; the line of its first token): a token and its tag
    per line, separated by a TAB (a token may then hold spaces) or else by whitespace; a line with more fields (CoNLL
    columns such as part of speech) takes the first as the token and the last as the tag; a blank line or a
    `-DOCSTART-` line ends a sentence."""
    tokens: list[list[str]] = []
    tags: list[list[str]] = []
    lines: list[int] = []
    sentence: list[tuple[str, str]] = []
    for number, line in [*_lines(text), (0, "")]:  # a last blank line ends the last sentence
        fields = [field.strip() for field in (line.split("\t") if "\t" in line else line.split())]
        fields = [field for field in fields if field]
        if not fields or fields[0] == "-DOCSTART-":
            if sentence:
                tokens.append([token for token, _ in sentence])
                tags.append([tag for _, tag in sentence])
                sentence = []
            continue
        if len(fields) < 2:
            reason = (
                "a token without a tag: write the token, a TAB (or spaces) and its tag, e.g. 'Paris<TAB>B-location'"
            )
            raise DropRejected(source, [Problem(number, reason)])
        if not sentence:
            lines.append(number)
        sentence.append((fields[0], fields[-1]))
    frame = _frame({"tokens": tokens, "tags": tags}, lines)
    frame.attrs[ONE_TOKEN_PER_LINE] = True
    return frame


def _parquet(path: Path, source: str) -> pd.DataFrame:
    """Each cell as the Python value of its Parquet type (an int column with a null stays ints and None, never
    floats); the index pandas stored beside the data is left out."""
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as parquet:
            table = parquet.read()
        stored_index = {
            name for name in (table.schema.pandas_metadata or {}).get("index_columns", []) if isinstance(name, str)
        }
        names = [name for name in table.column_names if name not in stored_index]
        _check_names(names, source, None)
        columns = {name: table.column(name).to_pylist() for name in names}
    except DropRejected:
        raise
    except Exception as error:  # pyarrow raises many types for a broken file
        raise DropRejected(source, [Problem(None, f"not a readable Parquet file: {error}")]) from None
    return _frame(columns, list(range(1, table.num_rows + 1)))


def read_table(path: Path, *, source: str | None = None) -> pd.DataFrame:
    """The file's rows with an extra `__line__` column (the 1-based line, or row for Parquet)."""
    source = source or str(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DropRejected(
            source, [Problem(None, f"unknown file type {path.suffix!r}; use one of {', '.join(sorted(FORMATS))}")]
        )
    if kind == "parquet":
        return _parquet(path, source)
    text = _decode(path.read_bytes(), source)
    if kind == "jsonl":
        return _jsonl(text, source)
    if kind == "conll":
        return _conll(text, source)
    return _delimited(text, "," if kind == "csv" else "\t", source)
