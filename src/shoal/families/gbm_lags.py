"""`gbm-lags`: one gradient-boosting model over all series on lag and calendar features, forecasting
recursively one step at a time.

Each row predicts y[t] from its lags (1..season, two seasons, a year), the calendar (month; day of year and
week for daily data) and the level of the last season, all relative to that level and in units of the
series' spread, so one model serves series of any scale and trend. The 90% interval is ± the held-out
one-step error quantile (a model fit on each series' first 80%, scored on the rest), widened by √step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import BusinessDay, Day, Tick
from sklearn.ensemble import HistGradientBoostingRegressor

from shoal.families import register
from shoal.families.base import Params
from shoal.families.forecast import Forecast, ForecastFamily, Series, Z
from shoal.families.runtime.threads import single_thread

HOLDOUT = 0.2


def lag_set(series: Sequence[Series]) -> list[int]:
    first, shortest = series[0], min(len(s.values) for s in series)
    m = max(first.season, 2)
    wanted = {*range(1, m + 1), 2 * m}
    if first.periods_per_year:
        wanted.add(first.periods_per_year)
    return sorted(lag for lag in wanted if lag <= shortest // 2)


def calendar(series: Series, timestamps: Sequence[object]) -> np.ndarray:
    """Month, and for daily or finer data the day of year (as a circle) and weekday."""
    index = pd.DatetimeIndex(timestamps)
    months = index.month.to_numpy(dtype=np.float64)
    if not isinstance(to_offset(series.freq), Tick | Day | BusinessDay):  # pandas 3: a Day is not a Tick
        return months[:, None]
    angle = 2 * np.pi * index.day_of_year.to_numpy(dtype=np.float64) / 365.25
    weekday = index.day_of_week.to_numpy(dtype=np.float64)
    return np.column_stack([months, np.sin(angle), np.cos(angle), weekday])


class _Rows:
    """Lag features of one series, relative to the level of its last season and in units of its spread."""

    def __init__(self, series: Series, lags: list[int]) -> None:
        self.series, self.lags, self.m = series, lags, max(series.season, 2)
        values = series.values.astype(np.float64)
        diffs = np.abs(np.diff(values))
        self.mean = float(values.mean())
        self.spread = float(diffs.mean()) if len(diffs) and diffs.mean() > 0 else 1.0

    def features(self, history: np.ndarray, calendar_row: np.ndarray) -> tuple[np.ndarray, float]:
        level = float(history[-self.m :].mean())
        lags = (history[-np.array(self.lags)] - level) / self.spread
        position = (level - self.mean) / self.spread
        return np.concatenate([lags, [position], calendar_row]), level

    def training(self, end: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows predicting y[t] for max(lag) <= t < end."""
        values, start = self.series.values.astype(np.float64), max(max(self.lags), self.m)
        cal = calendar(self.series, self.series.timestamps)
        xs, ys = [], []
        for t in range(start, end):
            x, level = self.features(values[:t], cal[t])
            xs.append(x)
            ys.append((values[t] - level) / self.spread)
        return np.array(xs).reshape(len(xs), -1), np.array(ys)


def _model(n_rows: int, params: Params, seed: int) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(
        learning_rate=params.get("learning_rate", 0.05),
        max_iter=params.get("max_iter", 300),
        max_leaf_nodes=15,
        min_samples_leaf=max(3, min(20, n_rows // 20)),
        early_stopping=False,
        random_state=seed,
    )


def _fit(rows: list[_Rows], ends: list[int], params: Params, seed: int) -> HistGradientBoostingRegressor:
    parts = [r.training(end) for r, end in zip(rows, ends, strict=True)]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return _model(len(y), params, seed).fit(x, y)


def _holdout_error(rows: list[_Rows], params: Params, seed: int) -> float:
    """The 90% quantile of absolute one-step errors (in spread units) on each series' last 20%."""
    start = max(max(rows[0].lags), rows[0].m)
    cuts = [max(start + 10, int(len(r.series.values) * (1 - HOLDOUT))) for r in rows]
    if any(cut >= len(r.series.values) for r, cut in zip(rows, cuts, strict=True)):
        return 1.0
    model = _fit(rows, cuts, params, seed)
    errors = []
    for r, cut in zip(rows, cuts, strict=True):
        x, y = r.training(len(r.series.values))
        held = slice(cut - start, None)
        errors.append(np.abs(model.predict(x[held]) - y[held]))
    return float(np.quantile(np.concatenate(errors), 0.9)) / Z


@register
class GbmLags(ForecastFamily):
    name = "gbm-lags"
    cost = 1.0
    expected_train_seconds_per_1k_rows = 1.0

    def forecast(self, series: Sequence[Series], params: Params, seed: int) -> list[Forecast]:
        with single_thread():
            return self._forecast(series, params, seed)

    def _forecast(self, series: Sequence[Series], params: Params, seed: int) -> list[Forecast]:
        lags = lag_set(series)
        rows = [_Rows(s, lags) for s in series]
        model = _fit(rows, [len(s.values) for s in series], params, seed)
        sigma = _holdout_error(rows, params, seed)
        histories = [s.values.astype(np.float64) for s in series]
        calendars = [calendar(s, s.future()) for s in series]
        steps = series[0].horizon
        means = np.zeros((len(series), steps))
        for step in range(steps):
            built = [r.features(h, cal[step]) for r, h, cal in zip(rows, histories, calendars, strict=True)]
            predicted = model.predict(np.array([x for x, _ in built]))
            for i, ((_, level), r) in enumerate(zip(built, rows, strict=True)):
                means[i, step] = level + predicted[i] * r.spread
                histories[i] = np.append(histories[i], means[i, step])
        out = []
        for i, r in enumerate(rows):
            half = Z * sigma * r.spread * np.sqrt(np.arange(1, steps + 1))
            out.append(Forecast(means[i], means[i] - half, means[i] + half))
        return out
