"""Forecasting served: series ids in; for each, the next `horizon` timestamps with the forecast and its 90%
interval out."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from shoal.families.base import Predictor
from shoal.tasks.codec import Codec, Parsed, Text


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


class ForecastingCodec(Codec):
    request = ForecastRequest
    answer = SeriesForecast
    inputs_doc = "series ids"
    answer_doc = "the next horizon points of a series"

    def answers(self, outputs: np.ndarray, predictor: Predictor, parsed: Parsed) -> list[Any]:
        # here, not at the top: the family brings pandas, which a server loads only with a forecasting model
        from shoal.families.forecast import LEVEL, ForecastPredictor

        assert isinstance(predictor, ForecastPredictor)
        h = predictor.horizon
        answers = []
        for series, row in zip(parsed.inputs, outputs.tolist(), strict=True):
            points = [
                {"timestamp": t, "value": v, "lower": lo, "upper": hi}
                for t, v, lo, hi in zip(
                    predictor.timestamps(series), row[:h], row[h : 2 * h], row[2 * h :], strict=True
                )
            ]
            answers.append({"series": series, "level": LEVEL / 100, "forecast": points})
        return answers

    def logged(self, inputs: list[Any], answers: list[Any]) -> tuple[list[str], list[str] | None]:
        return inputs, [format(a["forecast"][0]["value"], ".6g") for a in answers]
