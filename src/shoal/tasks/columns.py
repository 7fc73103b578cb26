"""Column types, and the one place where a drop's raw cells are checked against them.

Each task kind declares the type of each of its columns in its own home (`TaskKind.column_types` in
`tasks/<kind>/kind.py`); `read_columns` turns a drop's raw cells into typed values. A cell of the wrong type is a
problem with its line and reason, never coerced: a number, boolean, list, object or bytes is not a text, a float is
not a label, `inf` is not a measurement, a number is not a timestamp. Every text that passes is valid UTF-8 (no lone
surrogate) without NUL, so whatever reaches storage can be stored, hashed and sent as JSON.

The rules, by type:

- `TEXT`: a string. Whitespace-only is still a string (the task calls it empty).
- `LABEL`: a string, or an integer taken as its decimal digits (JSON `1`, a Parquet int column: the label "1",
  as a CSV cell `1` is). A float is refused, even `1.0`: it is how an int column with a null arrives from pandas,
  and "1.0" would split one class in two. A label, a series id.
- `CATEGORY`: a categorical feature: a string (as a served row must send it; a missing-value token such as `NA`
  or `null` is missing). A number in a categorical column is refused (a column of numbers is numeric).
- `NUMBER`: a finite int or float, or a string that spells one in decimal (`3.5`, `-1e3`; how CSV carries
  numbers); `inf` and booleans are refused; a missing-value token is missing.
- `TIMESTAMP`: an ISO 8601 string (a zone is converted to UTC and dropped), or a date / timestamp value (Parquet).

None, NaN and pandas' NA are missing in every type: the task decides whether a missing value is allowed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd

from shoal.data.errors import Problem
from shoal.data.readers import LINE
from shoal.data.text import text_problem


class ColumnType(StrEnum):
    TEXT = "text"
    LABEL = "label"
    CATEGORY = "category"
    NUMBER = "number"
    TIMESTAMP = "timestamp"


#: cell values read as missing in NUMBER, CATEGORY and TIMESTAMP columns (after stripping, case-insensitive)
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none"})
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_EXPECTED = {
    ColumnType.TEXT: "a text",
    ColumnType.LABEL: "a label (a string or an integer)",
    ColumnType.CATEGORY: "a category (a string)",
    ColumnType.NUMBER: "a finite number",
    ColumnType.TIMESTAMP: "an ISO 8601 timestamp",
}
_SHOWN = 40


class WrongType(ValueError):
    """A cell whose value is not of its column's type (the message says what it is)."""


def is_missing(value: object) -> bool:
    """None, NaN, NA, NaT, or a missing-value token such as `NA`."""
    if isinstance(value, str):
        return value.strip().lower() in MISSING
    return is_null(value)


def is_null(value: object) -> bool:
    """None, NaN, pandas' NA or NaT: a cell with no value (a string never is)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def as_number(value: object) -> float | None:
    """A finite float, or None when the value is not one (booleans, `inf` and non-decimal strings are not)."""
    try:
        return _number(value)
    except WrongType:
        return None


def describe(value: object) -> str:
    """What a cell holds, for a reason: 'a number (5)', 'a list', 'binary data (bytes)' ..."""
    if isinstance(value, bool | np.bool_):
        return f"a boolean ({bool(value)})"
    if isinstance(value, bytes | bytearray | memoryview):
        return "binary data (bytes)"
    if isinstance(value, Real | Decimal):
        return f"a number ({value})"
    if isinstance(value, date):
        return f"a timestamp ({value})"
    if isinstance(value, list | tuple | np.ndarray):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return f"the text {_shown(value)!r}"
    return f"a value of type {type(value).__name__}"


def _shown(text: str) -> str:
    """A user's text as a reason quotes it (with !r, which escapes what cannot be printed): cut after a few words."""
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _wrong(value: object, kind: ColumnType) -> WrongType:
    hint = {
        ColumnType.TEXT: "; a text column holds strings",
        ColumnType.LABEL: "; write labels as strings (or integers)",
        ColumnType.CATEGORY: "; write categories as strings",
        ColumnType.TIMESTAMP: "; write ISO 8601 such as 2024-01-31 or 2024-01-31T09:30:00",
    }.get(kind, "")
    return WrongType(f"{describe(value)} where {_EXPECTED[kind]} is expected{hint}")


def _text(value: object, kind: ColumnType) -> str:
    """A string that storage can hold (`shoal.data.text`)."""
    if not isinstance(value, str):
        raise _wrong(value, kind)
    problem = text_problem(value)
    if problem is not None:
        raise WrongType(problem)
    return value


def as_text(value: object) -> str | None:
    """The value when it is a text storage can hold, else None."""
    try:
        return _text(value, ColumnType.TEXT)
    except WrongType:
        return None


def _label(value: object, kind: ColumnType) -> str:
    if isinstance(value, Integral) and not isinstance(value, bool | np.bool_):
        try:
            return str(int(value))
        except ValueError:  # more digits than Python prints
            raise WrongType("an integer too long to be a label") from None
    return _text(value, kind)


def _number(value: object) -> float:
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value.strip()):
            raise WrongType(f"{_shown(value)!r} is not a number")
        number = float(value.strip())
    elif isinstance(value, Real | Decimal) and not isinstance(value, bool | np.bool_):
        try:
            number = float(value)
        except (OverflowError, ValueError):  # an int past float's range, a signalling NaN
            number = math.inf
    else:
        raise _wrong(value, ColumnType.NUMBER)
    if not math.isfinite(number):
        raise WrongType(f"{_shown(value) if isinstance(value, str) else value!r} is not a finite number")
    return number


def parse_times(texts: list[str]) -> dict[str, pd.Timestamp]:
    """ISO 8601 strings parsed at once (a zone converted to UTC and dropped); a string that is not one is left out."""
    unique = [text for text in dict.fromkeys(texts) if as_text(text) is not None]
    parsed = pd.to_datetime(
        pd.Series([t.strip() for t in unique], dtype=object), errors="coerce", format="ISO8601", utc=True
    )
    return {text: stamp for text, stamp in zip(unique, parsed.dt.tz_convert(None), strict=True) if not pd.isna(stamp)}


def _timestamp(value: object, parsed: dict[str, pd.Timestamp]) -> pd.Timestamp:
    if isinstance(value, str):
        if value not in parsed:
            _text(value, ColumnType.TIMESTAMP)  # a surrogate or NUL says so
            raise WrongType(f"{_shown(value)!r} is not an ISO 8601 timestamp")
        return parsed[value]
    if not isinstance(value, date | np.datetime64):
        raise _wrong(value, ColumnType.TIMESTAMP)
    stamp = pd.Timestamp(value)
    return stamp.tz_convert(None) if stamp.tzinfo is not None else stamp


def typed_value(value: object, kind: ColumnType, parsed: dict[str, pd.Timestamp] | None = None) -> Any:
    """The cell as its column type, None when it is missing; raises WrongType. A TIMESTAMP string is looked up in
    `parsed` (see `parse_times`), or parsed on its own."""
    if is_null(value) or (kind not in (ColumnType.TEXT, ColumnType.LABEL) and is_missing(value)):
        return None
    if kind == ColumnType.TEXT:
        return _text(value, kind)
    if kind == ColumnType.LABEL:
        return _label(value, kind)
    if kind == ColumnType.CATEGORY:
        return _text(value, kind)
    if kind == ColumnType.NUMBER:
        return _number(value)
    if parsed is None and isinstance(value, str):
        parsed = parse_times([value])
    return _timestamp(value, parsed or {})


@dataclass
class Typed:
    """A drop's declared columns as typed values (None: missing, or refused and listed in `problems`)."""

    lines: list[int]
    values: dict[str, list[Any]]
    problems: list[Problem] = field(default_factory=list)

    @property
    def refused(self) -> set[int]:
        """Lines with a cell of the wrong type."""
        return {p.line for p in self.problems if p.line is not None}


def read_columns(frame: pd.DataFrame, types: dict[str, ColumnType]) -> Typed:
    """Each column of `types` (present in `frame`) as typed values, and a problem per wrong cell."""
    lines = [int(line) for line in frame[LINE]]
    typed = Typed(lines, {})
    for column, kind in types.items():
        values: list[Any] = []
        cells = frame[column].tolist()
        parsed = parse_times([c for c in cells if isinstance(c, str)]) if kind == ColumnType.TIMESTAMP else None
        for line, value in zip(lines, cells, strict=True):
            try:
                values.append(typed_value(value, kind, parsed))
            except WrongType as error:
                typed.problems.append(Problem(line, f"column {column!r}: {error}"))
                values.append(None)
        typed.values[column] = values
    typed.problems.sort(key=lambda p: p.line or 0)
    return typed
