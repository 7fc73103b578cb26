"""The fleet file (`shoal.yaml`): a validated pydantic model of every model shoal runs.

This module holds what every model shares (gate, retrain, serve, split, the `ModelSpec` base) and the
workspace; each task kind's own fields, metrics and defaults live in its spec (`shoal.tasks.<kind>.spec`),
and a model's `task` picks which one validates it. `load_fleet` turns YAML into a `Fleet`; every error
names the file, the key path and what is allowed.
"""

from __future__ import annotations

import operator
import re
from functools import cache, reduce
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from shoal.cascade.spec import FALLBACK_TAGS
from shoal.tasks import model_specs, task_names

FLEET_FILE = "shoal.yaml"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: from this many training rows the search uses 2 folds unless the fleet file sets `cv_folds`
LARGE_TRAINING_ROWS = 5_000
#: the training rows a search cross-validates on at most unless the fleet file sets `search_rows` (more are sampled)
SEARCH_ROWS = 20_000


class FleetError(ValueError):
    """A fleet file that cannot be used, with the file, key path and what is allowed."""


class _Strict(BaseModel):
    # defer_build: a model's validator is built when it first validates, not at import (`shoal --help` stays fast)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, defer_build=True)


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
    max_job_seconds: float = Field(
        3600.0,
        gt=0,
        description="wall-clock budget of one retrain job; a job still running then is stopped and recorded as failed",
    )
    on_drift: bool = Field(
        False,
        description="a drift alert (see `monitor`) queues a retrain, when labelled data not trained on yet exists",
    )

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


class MonitorSpec(_Strict):
    """The worker's drift checks of this model's newest served predictions (`shoal.monitor`)."""

    every: str = Field("1h", description="interval between checks: '15m', '1h', '1d'")
    window: int = Field(500, ge=20, le=5000, description="how many of the newest logged predictions a check reads")
    window_hours: float | None = Field(
        None, gt=0, description="... only those logged in the last this many hours (default: however old)"
    )
    min_samples: int = Field(200, ge=20, description="no verdict on a window with fewer predictions")
    accuracy_margin: float = Field(
        0.05,
        ge=0,
        le=1,
        description="alert when a classifier's estimated or live accuracy is below its test accuracy less this",
    )

    @field_validator("every")
    @classmethod
    def _every(cls, value: str) -> str:
        if not re.fullmatch(r"[1-9]\d*(s|m|h|d)", value):
            raise ValueError("must be an interval like '15m', '1h' or '1d'")
        return value

    @model_validator(mode="after")
    def _enough(self) -> MonitorSpec:
        if self.min_samples > self.window:
            raise ValueError(f"min_samples ({self.min_samples}) above window ({self.window}): no check would decide")
        return self

    @property
    def seconds(self) -> int:
        return int(self.every[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[self.every[-1]]


class AlertSpec(_Strict):
    """What the whole fleet's drift checks may cost in false alarms, and where alerts are sent."""

    budget_per_week: float = Field(
        1.0, gt=0, description="false alarms per week the fleet accepts: every check's level is set from it"
    )
    webhook: str | None = Field(None, pattern=r"^https?://", description="URL each alert is POSTed to as JSON")


class ServeSpec(_Strict):
    """How the server batches this model."""

    max_batch_size: int = Field(64, ge=1, le=4096)
    max_queue: int = Field(2048, ge=1, description="queued inputs beyond this answer 503 at once")
    deadline_ms: float = Field(2000, gt=0, description="a request not started by then answers 503")
    concurrency: int = Field(
        1,
        ge=1,
        le=64,
        description="batches this model may run at the same time (batches that take "
        "longer than the pool's ~2 ms job budget: quick ones run one job at a time)",
    )
    max_inputs: int = Field(1024, ge=1, description="inputs one request may carry (413 beyond)")
    max_input_chars: int = Field(
        10_000,
        ge=1,
        description="characters one input may have (422 beyond): a text, a series id, or a row's column names and "
        "string values together; the longest text of the shared datasets has 910, the MiniLM encoders read the "
        "first 256 tokens (about 1,000 characters)",
    )


class SplitSpec(_Strict):
    test_fraction: float = Field(0.2, gt=0, lt=1)


class ModelSpec(_Strict):
    """What every model of the fleet has, whatever its task. Each task kind's spec (`shoal.tasks.<kind>.spec`)
    adds its own fields, metrics and defaults; the fleet file picks one by the model's `task`."""

    #: the fleet metrics this task's models may be judged on
    metrics: ClassVar[tuple[str, ...]] = ()
    #: the keys whose defaults the task chooses from a model's data at its first training (`shoal.defaults`)
    data_chosen: ClassVar[tuple[str, ...]] = ()
    #: which of them go together: a fleet file that sets one key of a group keeps the static defaults for the rest
    #: of that group (default: all of them, one group)
    data_chosen_groups: ClassVar[tuple[tuple[str, ...], ...]] = ()

    task: str
    data: str | None = Field(None, description="folder of this model's inbox (default: inbox/<name>)")
    metric: str
    families: list[str]
    cv_folds: int | None = Field(
        None,
        ge=2,
        le=10,
        description=f"folds of the search on training data (default 3; 2 from {LARGE_TRAINING_ROWS:,} training rows)",
    )
    search_rows: int | None = Field(
        None,
        ge=100,
        description="training rows the search cross-validates on at most: a larger training set is sampled (label by "
        "label for a classifier) for the search and the label audit, and the final fit uses every row "
        f"(default {SEARCH_ROWS:,})",
    )
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
    monitor: MonitorSpec | None = Field(None, description="drift checks by the worker (none unless set)")

    def folds(self, n_rows: int) -> int:
        """The search's folds for `n_rows` training rows: `cv_folds` if the fleet file sets it; else 3, or 2 from
        `LARGE_TRAINING_ROWS` rows (each fold then holds out thousands of rows, enough to rank settings, and the
        search costs about half as much)."""
        if self.cv_folds is not None:
            return self.cv_folds
        return 2 if n_rows >= LARGE_TRAINING_ROWS else 3

    @classmethod
    def chosen_groups(cls) -> tuple[tuple[str, ...], ...]:
        return cls.data_chosen_groups or ((cls.data_chosen,) if cls.data_chosen else ())

    @property
    def max_search_rows(self) -> int:
        """The training rows the search cross-validates on at most (`search_rows`, else `SEARCH_ROWS`)."""
        return self.search_rows if self.search_rows is not None else SEARCH_ROWS

    def given(self, key: str) -> bool:
        """Whether the fleet file sets `key` itself (its default may then be chosen from the data instead)."""
        return key in self.model_fields_set

    @classmethod
    def metric_choices(cls) -> str:
        """The metrics allowed, as an error message or a help text lists them."""
        return ", ".join(cls.metrics)

    @classmethod
    def allows_metric(cls, metric: str) -> bool:
        return metric in cls.metrics

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if not cls.allows_metric(value):
            raise ValueError(f"metric {value!r} is not one of {cls.metric_choices()}")
        return value

    @field_validator("families")
    @classmethod
    def _families(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("list at least one family")
        if len(set(value)) != len(value):
            raise ValueError("a family is listed twice")
        return value


class EvaluationSpec(_Strict):
    latency_calls: int = Field(1000, ge=10, description="timed calls per batch size, at most")
    latency_seconds: float = Field(
        1.0, gt=0, description="... or fewer: timing stops after this long per batch size (at least 50 calls)"
    )
    bootstrap: int = Field(1000, ge=100, description="bootstrap resamples for CIs and paired tests")
    measure_rss: bool = Field(True, description="measure peak RSS of load + predict in a subprocess")


class PredictionLogSpec(_Strict):
    """What the server keeps of its predictions: feedback joins them, the drift checks read them. The environment
    variables SHOAL_PREDICTION_RETENTION_HOURS and SHOAL_PREDICTION_MAX_ROWS, when set, win over these."""

    retention_hours: float = Field(168.0, gt=0, description="predictions older than this are deleted")
    max_rows: int = Field(1_000_000, ge=1, description="beyond this many, the oldest are deleted")
    sample: float = Field(
        1.0,
        gt=0,
        le=1,
        description="share of requests logged (all inputs of a request or none); feedback on a request not logged "
        "is refused",
    )


class ServerSpec(_Strict):
    """How `shoal serve` runs: auth, registry polling and request limits."""

    token_env: str = Field("SHOAL_TOKEN", description="environment variable holding the bearer token")
    protect_predict: bool = Field(False, description="require the token for predictions too")
    poll_interval_s: float = Field(1.0, gt=0, description="how often the server checks production versions")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="larger request bodies answer 413")


class WorkspaceSpec(_Strict):
    """Where the registry and artifacts live, and shared settings."""

    registry: str = Field("sqlite:///.shoal/registry.db", description="any SQLAlchemy URL")
    artifacts: str = Field(
        ".shoal/artifacts",
        description="artifact store: a folder, or a URL shared by every node (s3://bucket/prefix, file:///shared/dir; "
        "credentials from the environment only)",
    )
    artifact_cache: str = Field(
        ".shoal/artifact-cache", description="this node's staging folder and cache of an artifact store at a URL"
    )
    n_jobs: int = Field(2, ge=1, description="processes used for training")
    cost_per_core_hour: float = Field(0.04, ge=0, description="$ per CPU core-hour, for the cost model")
    seed: int = 0
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    server: ServerSpec = Field(default_factory=ServerSpec)
    prediction_log: PredictionLogSpec = Field(default_factory=PredictionLogSpec)
    alerts: AlertSpec = Field(default_factory=AlertSpec)


ModelName = Annotated[str, Field(pattern=_NAME.pattern)]


if TYPE_CHECKING:
    from shoal.llm.spec import LLMEndpoint
    from shoal.pipelines.spec import Pipeline

    AnyModelSpec = ModelSpec  # when run: the union of every task's spec, made by `_complete_fleet` (below)


class Fleet(_Strict):
    """The whole fleet file."""

    workspace: WorkspaceSpec = Field(default_factory=WorkspaceSpec)
    models: dict[ModelName, AnyModelSpec] = Field(default_factory=dict)
    pipelines: dict[ModelName, Pipeline] = Field(
        default_factory=dict, description="models working together on one input (shoal.pipelines.spec)"
    )
    llm: dict[ModelName, LLMEndpoint] = Field(
        default_factory=dict, description="OpenAI-compatible LLM endpoints a cascade may call (shoal.llm.spec)"
    )

    def model(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none yet"
            raise FleetError(f"no model {name!r} in the fleet (models: {known}); add it with 'shoal add'") from None

    def pipeline(self, name: str) -> Pipeline:
        try:
            return self.pipelines[name]
        except KeyError:
            known = ", ".join(sorted(self.pipelines)) or "none"
            raise FleetError(f"no pipeline {name!r} in the fleet file (pipelines: {known})") from None


def _format_errors(path: Path, error: ValidationError) -> str:
    tasks = task_names()
    lines = [f"{path}: {error.error_count()} problem(s) in the fleet file"]
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        if loc[:1] == ["models"] and len(loc) > 2 and loc[2] in tasks:
            del loc[2]  # the task tag pydantic puts after the model's name
        loc = [part for part in loc if part not in FALLBACK_TAGS]  # the tag of a cascade's kind of fallback
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        if item["type"] == "string_pattern_mismatch":
            message = "names are lowercase letters, digits, '-' and '_' (up to 63)"
        if item["type"] == "union_tag_invalid":
            loc.append("task")
            message = "Input should be " + ", ".join(repr(t) for t in tasks[:-1]) + f" or {tasks[-1]!r}"
        if item["type"] == "union_tag_not_found":
            loc.append("task")
            message = "Field required"
        lines.append(f"  {'.'.join(loc) or '(top level)'}: {message}")
    return "\n".join(lines)


@cache
def _complete_fleet() -> type[Fleet]:
    """`Fleet`, with each model entry validated by the spec its `task` names. The specs subclass `ModelSpec` above,
    so their union is made on the first fleet file read, not on import (a spec module may be what imports this
    one; and `shoal --help` imports no spec). The pipelines' and the LLM endpoints' specs are imported here too, for
    the same reasons."""
    from shoal.llm.spec import LLMEndpoint
    from shoal.pipelines.spec import Pipeline

    any_spec = Annotated[reduce(operator.or_, model_specs().values()), Field(discriminator="task")]
    names = {"AnyModelSpec": any_spec, "ModelName": ModelName, "Pipeline": Pipeline, "LLMEndpoint": LLMEndpoint}
    Fleet.model_rebuild(_types_namespace=names)
    return Fleet


def parse_fleet(data: Any, path: Path) -> Fleet:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FleetError(f"{path}: the fleet file must be a mapping with 'workspace' and 'models'")
    try:
        fleet = _complete_fleet().model_validate(data)
    except ValidationError as error:
        raise FleetError(_format_errors(path, error)) from None
    from shoal.cascade.spec import cascade_problems
    from shoal.families import check_families

    for name, spec in fleet.models.items():
        problem = check_families(spec.task, spec.families)
        if problem:
            raise FleetError(f"{path}: models.{name}.families: {problem}")
    problems = cascade_problems(fleet)
    if fleet.pipelines:
        from shoal.pipelines.spec import check_pipelines

        problems += check_pipelines(fleet)
    if problems:
        raise FleetError("\n  ".join([f"{path}: {len(problems)} problem(s) in the fleet file", *problems]))
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
