"""What the registry hands out: plain, immutable records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Drop:
    model: str
    hash: str
    uri: str
    source: str
    split: str
    n_rows: int
    n_train: int
    n_test: int
    warnings: list[str]
    created_at: datetime


@dataclass(frozen=True)
class Version:
    model: str
    number: int
    family: str
    params: dict[str, Any]
    params_hash: str
    dataset_version: str
    code_version: str
    metrics: dict[str, Any]
    artifact_uri: str
    checksum: str
    size_bytes: int
    test_hash: str
    label_error_rate: float | None
    created_at: datetime


@dataclass(frozen=True)
class AliasChange:
    model: str
    alias: str
    from_version: int | None
    to_version: int
    actor: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class Event:
    id: int
    model: str | None
    kind: str
    version: int | None
    message: str
    payload: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None


@dataclass(frozen=True)
class Job:
    id: int
    model: str
    kind: str
    dataset_version: str
    status: str
    reason: str
    lease_owner: str | None
    lease_expires: datetime | None
    attempts: int
    error: str | None
    created_at: datetime
    finished_at: datetime | None
