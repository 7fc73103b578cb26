"""The HTTP API's request and response models: the single source of the OpenAPI schema.

The predict route parses its body with a fast path (see `shoal.serve.predict`) that accepts exactly what
`PredictRequest` accepts; the other routes validate and serialize through these models directly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Text = Annotated[str, Field(min_length=1, description="one input text (not empty)")]
Status = Literal["loading", "ready", "swapping", "failed"]


class PredictRequest(BaseModel):
    """One or many texts to classify with the model's production version."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Text] = Field(
        min_length=1, description="texts to classify; more than the model's max_inputs answers 413"
    )
    top_k: int | None = Field(None, ge=1, strict=True, description="also return the k most likely labels")
    return_probabilities: bool = Field(False, strict=True, description="also return every label's probability")


class LabelScore(BaseModel):
    label: str
    probability: float


class Prediction(BaseModel):
    """The most likely label of one input, with the optional extras the request asked for."""

    label: str
    probability: float
    top_k: list[LabelScore] | None = Field(None, description="present when the request set top_k")
    probabilities: dict[str, float] | None = Field(None, description="present when return_probabilities")


class PredictResponse(BaseModel):
    model: str
    version: int = Field(description="the version that answered (stable across a hot swap for one request)")
    request_id: str = Field(description="also in the X-Request-ID header; quote it when reporting a problem")
    predictions: list[Prediction] = Field(description="one per input, in the order of the inputs")


class AnswerEnvelope(BaseModel):
    """What every task's answer carries besides its predictions."""

    model: str
    version: int = Field(description="the version that answered")
    request_id: str = Field(description="also in the X-Request-ID header")


Row = dict[str, float | str | None]


class RegressionPredictRequest(BaseModel):
    """Feature rows to predict with a regression model's production version."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Row] = Field(
        min_length=1,
        description="one object per row with every feature column: a number (numeric column), a string "
        "(categorical column) or null (unknown value); more than the model's max_inputs answers 413",
    )


class ValuePrediction(BaseModel):
    """The predicted value of one row and its prediction interval (null when the family has none)."""

    value: float
    lower: float | None = Field(None, description="lower bound of the interval")
    upper: float | None = Field(None, description="upper bound of the interval")
    level: float | None = Field(None, description="the interval's nominal coverage, e.g. 0.9")


class RegressionPredictResponse(AnswerEnvelope):
    predictions: list[ValuePrediction] = Field(description="one per input row, in order")


class ForecastRequest(BaseModel):
    """Series to forecast with a forecasting model's production version."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Text] = Field(min_length=1, description="series ids ('series' for a model with a single series)")


class ForecastPoint(BaseModel):
    timestamp: str
    value: float
    lower: float = Field(description="lower bound of the interval")
    upper: float = Field(description="upper bound of the interval")


class SeriesForecast(BaseModel):
    series: str
    level: float = Field(description="nominal coverage of the intervals, e.g. 0.9")
    forecast: list[ForecastPoint] = Field(description="the next horizon points after the latest observation")


class ForecastResponse(AnswerEnvelope):
    predictions: list[SeriesForecast] = Field(description="one per requested series, in order")


class EmbedRequest(BaseModel):
    """Texts to embed with an embedding model's production version."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Text] = Field(min_length=1, description="texts; more than the model's max_inputs answers 413")


class EmbedResponse(AnswerEnvelope):
    embeddings: list[list[float]] = Field(description="one unit-length vector per input, in order")


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. not_found, invalid_request, overloaded")
    message: str = Field(description="what went wrong and what to do next")


class ErrorResponse(BaseModel):
    error: ErrorBody


class KeyMetrics(BaseModel):
    """The serving version's evaluation on the frozen test set."""

    metric: str = Field(description="the fleet metric of this model")
    value: float | None = Field(None, description="its value")
    accuracy: float | None = None
    macro_f1: float | None = None
    p95_ms_batch1: float | None = None
    throughput_per_s: float | None = None
    cost_per_million: float | None = Field(None, description="$ per million predictions (measured CPU time)")


class ModelSummary(BaseModel):
    name: str
    task: str | None
    production_version: int | None = Field(description="the version the registry names as production")
    serving_version: int | None = Field(description="the version this server answers with")
    status: Status
    metrics: KeyMetrics | None = Field(description="of the serving version")


class ModelList(BaseModel):
    models: list[ModelSummary]


class VersionInfo(BaseModel):
    number: int
    family: str
    created_at: datetime
    metric: str | None
    value: float | None
    production: bool
    serving: bool
    feedback_count: int = Field(0, description="labels received through POST /v1/models/{name}/feedback")
    live_accuracy: float | None = Field(None, description="share of those labels this version predicted")


class GateEvent(BaseModel):
    kind: str = Field(description="promoted, rejected, rolled_back or failed")
    version: int | None
    message: str
    at: datetime | None


class SwapStatus(BaseModel):
    loaded_at: datetime | None = Field(description="when the serving version was loaded and warmed")
    swaps: int = Field(description="versions loaded by this server process")
    last_error: str | None = Field(description="why the last load or warm-up failed (the old version kept serving)")
    last_error_version: int | None
    last_error_at: datetime | None


class ModelDetail(ModelSummary):
    versions: list[VersionInfo]
    gate_history: list[GateEvent] = Field(description="latest promotions, rejections, rollbacks and failures")
    swap: SwapStatus


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    models: dict[str, Status] = Field(description="status of every production model")


class Reloaded(BaseModel):
    models: dict[str, Status]
