"""What the forecasting families share: the series they fit on, and a predictor that *is* its forecasts.

A forecasting family fits on regular series (`Series`: values on a `freq` grid) and forecasts the next
`horizon` points of each with a 90% interval. The series have no inputs beyond their own past, so a version's
forecasts are fixed by the data it was trained on: the `ForecastPredictor` stores them (JSON, no pickles) and
serving is a lookup by series id. New data makes a new version (the worker retrains on every drop).
The backtest refits the family at each origin, so a family is judged as a recipe, not as one fitted state.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shoal.families.base import Family, Params, Predictor, read_json, write_json

LEVEL = 90  # % nominal coverage of the intervals
Z = 1.6448536269514722  # two-sided 90% normal quantile
FORECAST_FILE = "forecast.json"
#: periods in a year by frequency name (without its anchor), for yearly lags and calendar features
PERIODS_PER_YEAR = {"MS": 12, "ME": 12, "QS": 4, "QE": 4, "W": 52, "D": 365, "B": 260, "h": 8766}


@dataclass(frozen=True)
class Series:
    """One regular series: `values[i]` is observed at `start + i * freq`."""

    id: str
    start: pd.Timestamp
    values: np.ndarray
    freq: str
    season: int
    horizon: int

    @property
    def timestamps(self) -> pd.DatetimeIndex:
        return pd.date_range(self.start, periods=len(self.values), freq=self.freq)

    def future(self, steps: int | None = None) -> pd.DatetimeIndex:
        """The timestamps of the next `steps` (default: horizon) points."""
        grid = pd.date_range(self.start, periods=len(self.values) + (steps or self.horizon), freq=self.freq)
        return grid[len(self.values) :]

    def head(self, n: int) -> Series:
        return replace(self, values=self.values[:n])

    @property
    def periods_per_year(self) -> int | None:
        return PERIODS_PER_YEAR.get(self.freq.lstrip("0123456789").split("-")[0])


@dataclass(frozen=True)
class Forecast:
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


class ForecastPredictor(Predictor):
    """The forecasts of one version: per series, the next `horizon` timestamps, values and 90% bounds.
    `predict_proba(series_ids)` returns rows `[mean_1..h, lower_1..h, upper_1..h]`."""

    def __init__(self, family: str, params: Params, horizon: int, table: dict[str, dict[str, list[Any]]]) -> None:
        self.family, self.params, self.horizon, self.table = family, params, horizon, table
        self.labels = [f"{part}_{step}" for part in ("mean", "lower", "upper") for step in range(1, horizon + 1)]

    @classmethod
    def build(cls, family: str, params: Params, series: Sequence[Series], forecasts: Sequence[Forecast]) -> Any:
        horizon = series[0].horizon if series else 0
        table = {
            s.id: {
                "timestamps": [t.isoformat() for t in s.future()],
                "mean": f.mean.astype(float).tolist(),
                "lower": f.lower.astype(float).tolist(),
                "upper": f.upper.astype(float).tolist(),
            }
            for s, f in zip(series, forecasts, strict=True)
        }
        return cls(family, params, horizon, table)

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
        rows = [self.table[series] for series in inputs]
        return np.array([[*row["mean"], *row["lower"], *row["upper"]] for row in rows], dtype=np.float64)

    def timestamps(self, series: str) -> list[str]:
        return list(self.table[series]["timestamps"])

    def warm_up_inputs(self) -> list[Any]:
        return [next(iter(self.table))]

    def check_inputs(self, inputs: Sequence[Any]) -> list[str]:
        problems = []
        for i, series in enumerate(inputs):
            if not isinstance(series, str):
                problems.append(f"inputs[{i}]: expected a series id (a string), got {series!r}")
            elif series not in self.table:
                known = ", ".join(list(self.table)[:10]) + (" ..." if len(self.table) > 10 else "")
                problems.append(f"inputs[{i}]: unknown series {series!r} (series: {known})")
        return problems

    def save(self, folder: Path) -> None:
        write_json(
            folder / FORECAST_FILE,
            {"family": self.family, "params": self.params, "horizon": self.horizon, "series": self.table},
        )

    def n_parameters(self) -> int:
        return 3 * self.horizon * len(self.table)

    @classmethod
    def load(cls, folder: Path) -> ForecastPredictor:
        data = read_json(folder / FORECAST_FILE)
        return cls(data["family"], data["params"], data["horizon"], data["series"])


class ForecastFamily(Family):
    """A forecasting recipe: `forecast` the next horizon points of each series with a 90% interval."""

    task = "forecasting"
    expected_p95_ms = 0.5  # serving is a lookup
    expected_size_mb = 1.0

    @abstractmethod
    def forecast(self, series: Sequence[Series], params: Params, seed: int) -> list[Forecast]:
        """Fit on each series' values (all of them) and forecast its next `horizon` points."""

    def fit(self, inputs: Sequence[Any], targets: Sequence[Any], params: Params, seed: int) -> ForecastPredictor:
        series = list(inputs)
        return ForecastPredictor.build(self.name, params, series, self.forecast(series, params, seed))

    def load(self, folder: Path) -> ForecastPredictor:
        return ForecastPredictor.load(folder)


def growing_interval(mean: np.ndarray, one_step: float, steps_per_block: int = 1) -> Forecast:
    """mean ± Z·σ·√k, k the number of blocks (of `steps_per_block` points) ahead: a random walk of errors."""
    k = np.arange(len(mean)) // max(steps_per_block, 1) + 1
    half = Z * one_step * np.sqrt(k)
    return Forecast(mean, mean - half, mean + half)
