"""A forecasting model in the fleet file."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from shoal.fleet import ModelSpec

#: the season length a frequency implies when `season_length` is not given (pandas offset name prefix)
SEASONS = {"MS": 12, "ME": 12, "M": 12, "QS": 4, "QE": 4, "Q": 4, "W": 52, "D": 7, "B": 5, "h": 24, "H": 24}


class ForecastingSpec(ModelSpec):
    metrics: ClassVar[tuple[str, ...]] = ("mase", "smape", "mae")

    task: Literal["forecasting"]
    id_column: str | None = Field(None, description="the series id column (none: a single series)")
    time_column: str = Field("timestamp", description="the timestamp column")
    value_column: str = Field("value", description="the observed value column")
    freq: str = Field(description="the series' pandas frequency, e.g. 'MS' or 'D'")
    horizon: int = Field(ge=1, le=10_000, description="points forecast ahead")
    season_length: int | None = Field(None, ge=1, description="periods per season (default: by freq)")
    backtest_windows: int = Field(3, ge=1, le=100, description="the most recent windows tested")
    max_gap: int = Field(1, ge=0, description="missing periods in a row tolerated (interpolated)")
    metric: str = "mase"
    families: list[str] = Field(default_factory=lambda: ["seasonal-naive", "auto-ets", "auto-arima", "gbm-lags"])

    @model_validator(mode="before")
    @classmethod
    def _needs_freq_and_horizon(cls, data: Any) -> Any:
        if isinstance(data, dict) and (data.get("freq") is None or data.get("horizon") is None):
            raise ValueError("a forecasting model needs freq and horizon (shoal add --freq MS --horizon 12)")
        return data

    @field_validator("freq")
    @classmethod
    def _pandas_frequency(cls, value: str) -> str:
        from pandas.tseries.frequencies import to_offset

        try:
            to_offset(value)
        except ValueError:
            raise ValueError(f"freq {value!r} is not a pandas frequency such as 'D', 'W', 'MS', 'h'") from None
        return value

    @property
    def season(self) -> int:
        """Periods per season: `season_length`, else what `freq` implies (1: no seasonality)."""
        if self.season_length is not None:
            return self.season_length
        name = self.freq.lstrip("0123456789")
        return SEASONS.get(name, SEASONS.get(name.split("-")[0], 1))
