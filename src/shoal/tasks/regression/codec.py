"""Regression served: rows of feature values in; the predicted value and its interval out.

Each row's features are checked against the serving version's schema by the predictor (`check_inputs`), so a
bad row is a 422, never a 500."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field

from shoal.families.base import Predictor
from shoal.tasks.codec import Codec, Parsed

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


class RegressionCodec(Codec):
    request = RegressionPredictRequest
    answer = ValuePrediction
    inputs_doc = "rows of feature values"
    answer_doc = "a value with its interval"

    def accepts(self, item: Any) -> bool:
        return type(item) is dict

    def chars(self, item: Any) -> int:
        """A row's column names and string values together (numbers and nulls are short)."""
        return sum(len(key) + (len(value) if type(value) is str else 0) for key, value in item.items())

    def answers(self, outputs: np.ndarray, predictor: Predictor, parsed: Parsed) -> list[Any]:
        # here, not at the top: the family brings scikit-learn, which a server loads only with a model that needs it
        from shoal.families.tabular import INTERVAL_LEVEL

        answers = []
        for value, lower, upper in outputs.tolist():
            answer: dict[str, Any] = {"value": value}
            if math.isfinite(lower) and math.isfinite(upper):
                answer.update(lower=lower, upper=upper, level=INTERVAL_LEVEL)
            answers.append(answer)
        return answers

    def logged(self, inputs: list[Any], answers: list[Any]) -> tuple[list[str], list[str] | None]:
        return [orjson.dumps(row).decode() for row in inputs], [format(a["value"], ".6g") for a in answers]

    def drift_view(self, inputs: list[str], answers: list[str]) -> tuple[Any, list[Any]] | None:
        import pandas as pd  # not on the serving path

        return pd.DataFrame([orjson.loads(row) for row in inputs]), [float(a) for a in answers]
