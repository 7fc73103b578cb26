"""Log configuration for `shoal serve`: readable lines, or one JSON object per line with `--log-json`."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson


class JsonFormatter(logging.Formatter):
    """`{"at": ..., "level": ..., "logger": ..., "message": ..., "error": ...}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def log_config(json: bool, level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` dict for uvicorn's and shoal's loggers (uvicorn applies it per worker)."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if json else {"format": "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"}
    )
    handler = {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "loggers": {
            name: {"handlers": ["default"], "level": level, "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "shoal")
        },
    }
