"""`seasonal-naive`: each point is the value one season earlier. The floor of forecasting, like `majority`
for classification; its interval grows with each season ahead (σ of the seasonal differences)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shoal.families import register
from shoal.families.base import Params
from shoal.families.forecast import Forecast, ForecastFamily, Series, growing_interval


def seasonal_naive(series: Series) -> Forecast:
    values = series.values
    m = series.season if len(values) > series.season else 1
    last = values[-m:]
    mean = np.array([last[i % m] for i in range(series.horizon)], dtype=np.float64)
    diffs = values[m:] - values[:-m]
    sigma = float(np.sqrt(np.mean(diffs**2))) if len(diffs) else 0.0
    return growing_interval(mean, sigma, m)


@register
class SeasonalNaive(ForecastFamily):
    name = "seasonal-naive"
    cost = 0.01
    expected_train_seconds_per_1k_rows = 0.01

    def forecast(self, series: Sequence[Series], params: Params, seed: int) -> list[Forecast]:
        return [seasonal_naive(s) for s in series]
