"""The fleet file (`shoal.yaml`): a validated pydantic model of every model shoal runs.

`load_fleet` turns YAML into a `Fleet`; every error names the file, the key path and what is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

FLEET_FILE = "shoal.yaml"
TASKS = ("text-classification", "regression", "forecasting", "embedding")
Task = Literal["text-classification", "regression", "forecasting", "embedding"]
CLASSIFICATION_METRICS = ("accuracy", "macro_f1", "macro_recall", "mcc")
REGRESSION_METRICS = ("mae", "rmse", "r2", "mape")
FORECAST_METRICS = ("mase", "smape", "mae")
EMBEDDING_METRICS = ("spearman",)
#: the season length a frequency implies when `season_length` is not given (pandas offset name prefix)
SEASONS = {"MS": 12, "ME": 12, "M": 12, "QS": 4, "QE": 4, "Q": 4, "W": 52, "D": 7, "B": 5, "h": 24, "H": 24}
#: what a model of each task gets when the fleet file leaves `metric` or `families` out
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "text-classification": {"metric": "accuracy", "families": ["majority", "tfidf-logreg", "tfidf-svm"]},
    "regression": {"metric": "mae", "families": ["mean", "ridge", "gbm"]},
    "forecasting": {"metric": "mase", "families": ["seasonal-naive", "auto-ets", "auto-arima", "gbm-lags"]},
    "embedding": {"metric": "spearman", "families": ["static-embed", "minilm-embed"]},
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_F1_OF_CLASS = re.compile(r"^f1:(?P<label>.+)$")


class FleetError(ValueError):
    """A fleet file that cannot be used, with the file, key path and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class GateSpec(_Strict):
    """When a challenger may replace the production version."""

    min_improvement: float = Field(0.0, ge=0, description="smallest metric gain that counts (absolute)")
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level of the paired test")
    non_inferiority_margin: float = Field(
        0.0,
        ge=0,
        description="a challenger at least 2x cheaper may win if its metric is no worse than this margin",
    )
    max_p95_latency_ms: float | None = Field(None, gt=0, description="p95 latency budget for a batch of 1")
    max_size_mb: float | None = Field(None, gt=0, description="artifact size budget")


class RetrainSpec(_Strict):
    """What starts a retrain without anyone typing a command."""

    on_new_data: bool = True
    min_new_rows: int = Field(1, ge=1, description="retrain once this many new rows have arrived ...")
    debounce_seconds: float = Field(5.0, ge=0, description="... or this long after the last new drop")
    schedule: str | None = Field(None, description="cron expression ('0 3 * * *') or interval ('6h', '30m')")

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if re.fullmatch(r"\d+(s|m|h|d)", value):
            return value
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError("must be a cron expression like '0 3 * * *' or an interval like '6h', '30m'")
        return value


class ServeSpec(_Strict):
    """How the server batches this model."""

    max_batch_size: int = Field(64, ge=1, le=4096)
    max_queue: int = Field(2048, ge=1, description="queued inputs beyond this answer 503 at once")
    deadline_ms: float = Field(2000, gt=0, description="a request not started by then answers 503")
    concurrency: int = Field(1, ge=1, le=64, description="batches this model may run at the same time")
    max_inputs: int = Field(1024, ge=1, description="inputs one request may carry (413 beyond)")


class SplitSpec(_Strict):
    test_fraction: float = Field(0.2, gt=0, lt=1)


class ModelSpec(_Strict):
    """One model of the fleet."""

    task: Task
    data: str | None = Field(None, description="folder of this model's inbox (default: inbox/<name>)")
    text_column: str = "text"
    label_column: str = "label"
    labels: list[str] | None = Field(None, description="declared label set; other labels are rejected")
    target_column: str | None = Field(None, description="regression: the numeric column to predict")
    pair_column: str = Field("text_pair", description="embedding: the second text of an evaluation pair")
    score_column: str = Field("score", description="embedding: the pair's similarity (any numeric scale)")
    id_column: str | None = Field(None, description="forecasting: the series id column (none: a single series)")
    time_column: str = Field("timestamp", description="forecasting: the timestamp column")
    value_column: str = Field("value", description="forecasting: the observed value column")
    freq: str | None = Field(None, description="forecasting: the series' pandas frequency, e.g. 'MS' or 'D'")
    horizon: int | None = Field(None, ge=1, le=10_000, description="forecasting: points forecast ahead")
    season_length: int | None = Field(None, ge=1, description="forecasting: periods per season (default: by freq)")
    backtest_windows: int = Field(3, ge=1, le=100, description="forecasting: the most recent windows tested")
    max_gap: int = Field(1, ge=0, description="forecasting: missing periods in a row tolerated (interpolated)")
    metric: str = "accuracy"
    families: list[str] = Field(default_factory=lambda: ["majority", "tfidf-logreg", "tfidf-svm"])
    cv_folds: int = Field(3, ge=2, le=10, description="folds of the search on training data")
    max_train_seconds: float | None = Field(
        None, gt=0, description="skip families whose declared training cost exceeds this budget"
    )
    quantization_tolerance: float = Field(
        0.01, ge=0, description="a quantized variant is eligible only within this of its full-precision metric"
    )
    split: SplitSpec = Field(default_factory=SplitSpec)
    gate: GateSpec = Field(default_factory=GateSpec)
    retrain: RetrainSpec = Field(default_factory=RetrainSpec)
    serve: ServeSpec = Field(default_factory=ServeSpec)

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, data: Any) -> Any:
        """`metric` and `families` default to what suits the model's task."""
        if isinstance(data, dict) and data.get("task") in TASK_DEFAULTS:
            missing = {k: v for k, v in TASK_DEFAULTS[data["task"]].items() if k not in data}
            return {**data, **missing} if missing else data
        return data

    @field_validator("families")
    @classmethod
    def _families(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one family")
        if len(set(value)) != len(value):
            raise ValueError("a family is listed twice")
        return value

    @model_validator(mode="after")
    def _metric_fits_task(self) -> ModelSpec:
        if self.task == "text-classification":
            match = _F1_OF_CLASS.match(self.metric)
            if self.metric not in CLASSIFICATION_METRICS and not match:
                raise ValueError(
                    f"metric {self.metric!r} is not one of {', '.join(CLASSIFICATION_METRICS)} or 'f1:<label>'"
                )
            if match and self.labels is not None and match["label"] not in self.labels:
                raise ValueError(f"metric {self.metric!r} names a label that is not in labels")
        if self.task == "regression":
            if self.metric not in REGRESSION_METRICS:
                raise ValueError(f"metric {self.metric!r} is not one of {', '.join(REGRESSION_METRICS)}")
            if not self.target_column:
                raise ValueError("a regression model needs target_column (shoal add --target COLUMN)")
        if self.task == "forecasting":
            self._check_forecasting()
        if self.task == "embedding" and self.metric not in EMBEDDING_METRICS:
            raise ValueError(f"metric {self.metric!r} is not one of {', '.join(EMBEDDING_METRICS)}")
        return self

    def _check_forecasting(self) -> None:
        if self.metric not in FORECAST_METRICS:
            raise ValueError(f"metric {self.metric!r} is not one of {', '.join(FORECAST_METRICS)}")
        if self.freq is None or self.horizon is None:
            raise ValueError("a forecasting model needs freq and horizon (shoal add --freq MS --horizon 12)")
        from pandas.tseries.frequencies import to_offset

        try:
            to_offset(self.freq)
        except ValueError:
            raise ValueError(f"freq {self.freq!r} is not a pandas frequency such as 'D', 'W', 'MS', 'h'") from None

    @property
    def season(self) -> int:
        """Periods per season: `season_length`, else what `freq` implies (1: no seasonality)."""
        if self.season_length is not None:
            return self.season_length
        name = (self.freq or "").lstrip("0123456789")
        return SEASONS.get(name, SEASONS.get(name.split("-")[0], 1))

    @property
    def positive_label(self) -> str | None:
        match = _F1_OF_CLASS.match(self.metric)
        return match["label"] if match else None


class EvaluationSpec(_Strict):
    latency_calls: int = Field(1000, ge=10, description="timed calls per batch size")
    bootstrap: int = Field(1000, ge=100, description="bootstrap resamples for CIs and paired tests")
    measure_rss: bool = Field(True, description="measure peak RSS of load + predict in a subprocess")


class ServerSpec(_Strict):
    """How `shoal serve` runs: auth, registry polling and request limits."""

    token_env: str = Field("SHOAL_TOKEN", description="environment variable holding the bearer token")
    protect_predict: bool = Field(False, description="require the token for predictions too")
    poll_interval_s: float = Field(1.0, gt=0, description="how often the server checks production versions")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="larger request bodies answer 413")


class WorkspaceSpec(_Strict):
    """Where the registry and artifacts live, and shared settings."""

    registry: str = Field("sqlite:///.shoal/registry.db", description="any SQLAlchemy URL")
    artifacts: str = Field(".shoal/artifacts", description="artifact root folder")
    n_jobs: int = Field(2, ge=1, description="processes used for training")
    cost_per_core_hour: float = Field(0.04, ge=0, description="$ per CPU core-hour, for the cost model")
    seed: int = 0
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    server: ServerSpec = Field(default_factory=ServerSpec)


ModelName = Annotated[str, Field(pattern=_NAME.pattern)]


class Fleet(_Strict):
    """The whole fleet file."""

    workspace: WorkspaceSpec = Field(default_factory=WorkspaceSpec)
    models: dict[ModelName, ModelSpec] = Field(default_factory=dict)

    def model(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none yet"
            raise FleetError(f"no model {name!r} in the fleet (models: {known}); add it with 'shoal add'") from None


def _format_errors(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: {error.error_count()} problem(s) in the fleet file"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        if item["type"] == "string_pattern_mismatch":
            message = "names are lowercase letters, digits, '-' and '_' (up to 63)"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def parse_fleet(data: Any, path: Path) -> Fleet:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FleetError(f"{path}: the fleet file must be a mapping with 'workspace' and 'models'")
    try:
        fleet = Fleet.model_validate(data)
    except ValidationError as error:
        raise FleetError(_format_errors(path, error)) from None
    from shoal.families import check_families

    for name, spec in fleet.models.items():
        problem = check_families(spec.task, spec.families)
        if problem:
            raise FleetError(f"{path}: models.{name}.families: {problem}")
    return fleet


def read_yaml(path: Path) -> Any:
    try:
        return YAML(typ="rt").load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FleetError(f"no fleet file in {path.parent}; create one with 'shoal init -w {path.parent}'") from None
    except YAMLError as error:
        raise FleetError(f"{path}: not valid YAML: {error}") from None


def load_fleet(path: Path) -> Fleet:
    return parse_fleet(read_yaml(path), path)
