"""What the registry hands out: plain, immutable records."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

#: the provenance kind of a cold start's drop of its LLM's logged answers (`shoal.coldstart`)
LLM_ANSWERS = "llm-answers"
#: how such a drop's source read when it had no provenance (`Registry` gives these one when it opens)
LEGACY_LLM_ANSWERS = re.compile(
    rf"{LLM_ANSWERS} of v(\d+): endpoint (.+), model (.+), prompt ([0-9a-f]+), (\d+) answer\(s\)"
)


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
    #: where the labels came from when no human gave them (`{"kind": "teacher" | "synth" | "llm-answers", "teacher":
    #: ..., "prompt_hash": ..., "confidence": [one per row, or None]}`; a cold start's LLM answers add the version and
    #: `last_log_id`, the id of the last logged answer they took); None for a human-labelled drop
    provenance: dict[str, Any] | None = None


@dataclass(frozen=True)
class PipelineDrop:
    """A pipeline's labelled test file, stored whole (its `text` column and one label column per judged step)."""

    pipeline: str
    hash: str
    uri: str
    source: str
    n_rows: int
    created_at: datetime


@dataclass(frozen=True)
class PipelineScore:
    """A pipeline judged end to end after one of its models changed production version (`record`: the test set,
    the component's gain as the gate recorded it, the end-to-end and per-step accuracies, every model's version,
    or the error that kept it from being judged)."""

    id: int
    pipeline: str
    model: str
    from_version: int | None
    to_version: int
    actor: str
    record: dict[str, Any]
    at: datetime


@dataclass(frozen=True)
class Profile:
    """What a version costs to serve, measured on the test inputs."""

    p50_ms_batch1: float
    p95_ms_batch1: float
    p50_ms_batch64: float
    p95_ms_batch64: float
    throughput_per_s: float  # inputs per second at batch 64
    cpu_seconds_per_prediction: float
    latency_calls: int
    size_bytes: int
    n_parameters: int
    peak_rss_mb: float | None  # None when not measured
    cost_per_million: float  # $ per million predictions at batch 64


@dataclass(frozen=True)
class CrossValidation:
    """The search on training folds: its folds, the chosen setting's score, every setting's score, and the training
    rows it ran on when they were a sample of a large training set (None: all of them)."""

    folds: int
    score: float | None
    grid: list[dict[str, Any]]
    rows: int | None = None


#: the stored keys that the trainer adds (absent from a version registered by hand)
_OPTIONAL = frozenset({"train_seconds", "eval_seconds", "cv", "n_train", "fit_started_from", "phases"})
#: the stored keys that are not the task's scores
_FIELDS = frozenset({"metric", "ci", "n_test", "test_hash", "profile"}) | _OPTIONAL


@dataclass(frozen=True)
class VersionMetrics:
    """A version's evaluation on the frozen test set. `scores` holds what its task kind scored, keyed as the
    fleet file names metrics (the fleet metric, accuracy, per_class, mase, ...) with the task's details
    (a forecast's data_end and backtest)."""

    metric: str  # the fleet metric's name
    ci: list[float]  # the fleet metric's 95% bootstrap CI
    scores: dict[str, Any]
    n_test: int
    test_hash: str
    profile: Profile
    train_seconds: float | None = None  # None: written by hand, not by the trainer
    eval_seconds: float | None = None
    cv: CrossValidation | None = None
    n_train: int | None = None
    fit_started_from: int | None = None  # the version whose solution the final fit's solver began at (None: zero)
    #: where the training and evaluation time went, in seconds: the family's own search fits, the shared features,
    #: the final fit, the task's after-fit step (the label audit), save, evaluation, peak RSS, latency
    phases: dict[str, float] | None = None

    @property
    def value(self) -> float:
        """The fleet metric's value (NaN for a version never scored on a test set: a cold start's LLM version)."""
        return float(self.scores.get(self.metric, math.nan))

    def to_json(self) -> dict[str, Any]:
        """The stored form: the scores beside the other fields in one flat object."""
        stored = {**self.scores, **asdict(self)}
        del stored["scores"]
        if stored["cv"] is not None and stored["cv"]["rows"] is None:  # searched on every row: stored as before
            del stored["cv"]["rows"]
        return {key: value for key, value in stored.items() if value is not None or key not in _OPTIONAL}

    @classmethod
    def from_json(cls, stored: Mapping[str, Any]) -> VersionMetrics:
        cv = stored.get("cv")
        return cls(
            metric=stored["metric"],
            ci=list(stored["ci"]),
            scores={key: value for key, value in stored.items() if key not in _FIELDS},
            n_test=stored["n_test"],
            test_hash=stored["test_hash"],
            profile=Profile(**stored["profile"]),
            train_seconds=stored.get("train_seconds"),
            eval_seconds=stored.get("eval_seconds"),
            cv=CrossValidation(**cv) if cv is not None else None,
            n_train=stored.get("n_train"),
            fit_started_from=stored.get("fit_started_from"),
            phases=stored.get("phases"),
        )


@dataclass(frozen=True)
class Version:
    model: str
    number: int
    family: str
    params: dict[str, Any]
    params_hash: str
    dataset_version: str
    code_version: str
    metrics: VersionMetrics
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
class ModelDefaults:
    """The defaults chosen for a model at its first training, kept for its life: fleet-file keys and values
    (`settings`), the data profile they were chosen from, and why."""

    settings: dict[str, Any]
    profile: dict[str, Any]
    why: str
    at: datetime


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
