"""Structured worker logs: one line per event, as `key=value` text or as JSON (`--log-json`)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

log = logging.getLogger("shoal.worker")
FIELDS = "shoal_fields"


def emit(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with its fields (`emit("job_started", model="spam", job=3)`)."""
    log.log(level, event, extra={FIELDS: fields})


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        fields: dict[str, Any] = getattr(record, FIELDS, {})
        line = {"time": at, "level": record.levelname.lower(), "event": record.getMessage(), **fields}
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        if self.as_json:
            return json.dumps(line, default=str, ensure_ascii=False)
        text = " ".join(f"{key}={_text(value)}" for key, value in fields.items())
        tail = f"\n{line['traceback']}" if "traceback" in line else ""
        return f"{at} {line['level']:<7} {line['event']} {text}".rstrip() + tail


def _text(value: Any) -> str:
    shown = str(value)
    return json.dumps(shown, ensure_ascii=False) if not shown or any(c.isspace() or c == '"' for c in shown) else shown


def configure(*, as_json: bool, stream: TextIO = sys.stdout) -> None:
    """Send the worker's events to `stream`, one line each, replacing earlier handlers."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_Formatter(as_json))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
