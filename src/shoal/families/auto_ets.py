"""`auto-ets`: exponential smoothing (error, trend, season chosen by AICc) from statsforecast."""

from __future__ import annotations

from typing import Any

from shoal.families import register
from shoal.families.statsforecast_family import StatsForecastFamily, statsforecast_models


@register
class AutoEts(StatsForecastFamily):
    name = "auto-ets"
    cost = 0.5
    expected_train_seconds_per_1k_rows = 1.0

    def model(self, season: int) -> Any:
        return statsforecast_models().AutoETS(season_length=season)
