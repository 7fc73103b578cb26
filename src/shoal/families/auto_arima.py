"""`auto-arima`: (seasonal) ARIMA with orders chosen stepwise by AICc, from statsforecast."""

from __future__ import annotations

from typing import Any

from shoal.families import register
from shoal.families.statsforecast_family import StatsForecastFamily, statsforecast_models


@register
class AutoArima(StatsForecastFamily):
    name = "auto-arima"
    cost = 2.0
    expected_train_seconds_per_1k_rows = 5.0

    def model(self, season: int) -> Any:
        return statsforecast_models().AutoARIMA(season_length=season)
