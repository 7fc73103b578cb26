"""The families backed by statsforecast (optional extra `forecasting`): one fit per series, its own 90%
interval. statsforecast is imported only here, when such a family fits, so the core starts without it."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from shoal.families.base import Params
from shoal.families.forecast import LEVEL, Forecast, ForecastFamily, Series

#: longer seasons are fit without seasonality (ETS and seasonal ARIMA are impractical beyond this)
MAX_SEASON = 24
#: points of history a model is fit on (the most recent): AutoARIMA on ten years of daily data takes minutes
MAX_HISTORY = 1000


class StatsForecastFamily(ForecastFamily):
    @abstractmethod
    def model(self, season: int) -> Any:
        """An unfitted statsforecast model."""

    def forecast(self, series: Sequence[Series], params: Params, seed: int) -> list[Forecast]:
        out = []
        for s in series:
            season = s.season if 1 < s.season <= MAX_SEASON and len(s.values) >= 2 * s.season else 1
            history = s.values[-MAX_HISTORY:].astype(np.float64)
            result = self.model(season).forecast(y=history, h=s.horizon, level=[LEVEL])
            out.append(Forecast(result["mean"], result[f"lo-{LEVEL}"], result[f"hi-{LEVEL}"]))
        return out


def statsforecast_models() -> Any:
    try:
        from statsforecast import models
    except ImportError:
        raise ImportError("this family needs statsforecast: pip install 'shoal[forecasting]'") from None
    return models
