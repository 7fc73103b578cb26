"""Time-series forecasting's data and judging: long-format rows (series id, timestamp, value), one or many
series on a declared frequency, forecast `horizon` points ahead.

A drop is rejected whole, with file, line and reason, for an unparseable timestamp, a timestamp off the
frequency's grid, a missing or non-numeric value, a timestamp twice in one series (or already stored with
another value), or a gap of more than `max_gap` missing periods (smaller gaps are interpolated, with a warning).
There is no hash split: the frozen test is the most recent `backtest_windows` windows of `horizon` points,
so it moves forward only when new data extends the series. Each family is judged by a rolling-origin backtest
(refit at each window's origin on the data before it), and the production version is the family refit on all
the data: its stored forecasts start right after the latest observation.

Watching production (`realised_outcomes`): a version's forecasts meet the values that later drops of the series
bring; their errors, scaled like MASE's (by the seasonal-naive in-sample MAE of the history before the forecast),
are compared with its errors on its backtest (`served_errors`, `test_errors`). Observations are final, so the
history before a forecast is the data the version was trained on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import Tick

from shoal.data.errors import DropRejected, Problem
from shoal.data.sets import TestSet, TrainSet
from shoal.evaluate import forecasting as metrics
from shoal.families import get_family
from shoal.families.forecast import ForecastFamily, Series
from shoal.fleet import ModelSpec
from shoal.tasks.base import Errors, TaskKind, Validated
from shoal.tasks.columns import ColumnType
from shoal.tasks.forecasting.spec import ForecastingSpec

SERIES, DS, Y = "series", "ds", "y"
SINGLE = "series"  # the id of the one series of a model without id_column
MIN_HISTORY = 8  # points before the first backtest origin, beyond two seasons
MEMO_SIZE = 64
FLOOR = "seasonal-naive"


@dataclass(frozen=True)
class Backtest:
    """The rolling-origin windows: per series, `windows` origins `horizon` apart, the last window ending at the
    series' last point."""

    series: list[Series]
    windows: int
    horizon: int

    def origins(self, s: Series) -> list[int]:
        n = len(s.values)
        return [n - self.horizon * (self.windows - j) for j in range(self.windows)]

    @property
    def data_end(self) -> str:
        return max(s.timestamps[-1] for s in self.series).isoformat()


class Forecasting(TaskKind):
    name = "forecasting"
    columns = (SERIES, DS, Y)
    column_types = (
        ("id_column", ColumnType.LABEL),
        ("time_column", ColumnType.TIMESTAMP),
        ("value_column", ColumnType.NUMBER),
    )
    lower_is_better = frozenset(metrics.METRICS)
    floor_name = "the seasonal-naive floor"
    serving_floor = FLOOR
    report_columns = (("smape", "sMAPE %"), ("mae", "MAE"), ("interval_coverage", "90% coverage"))
    realised_outcomes = True

    # -- data --------------------------------------------------------------------------------------
    def validate(
        self,
        frame: pd.DataFrame,
        spec: ModelSpec,
        source: str,
        *,
        skip_invalid: bool,
        stored: pd.DataFrame | None = None,
    ) -> Validated:
        assert isinstance(spec, ForecastingSpec)
        typed = self.read(frame, spec, source)
        lines = typed.lines
        ids = typed.values[spec.id_column] if spec.id_column else [SINGLE] * len(lines)
        times, values = typed.values[spec.time_column], typed.values[spec.value_column]
        known = _stored_values(stored)
        problems, refused = list(typed.problems), typed.refused
        seen: dict[tuple[str, pd.Timestamp], int] = {}
        for line, series, ts, number in zip(lines, ids, times, values, strict=True):
            if line in refused:
                continue
            missing = [
                column
                for column, value in ((spec.id_column, series), (spec.time_column, ts), (spec.value_column, number))
                if column is not None and value is None
            ]
            if missing:
                problems.append(Problem(line, f"missing value in column(s) {', '.join(map(repr, missing))}"))
                continue
            first = seen.setdefault((series, ts), line)
            if first != line:
                problems.append(
                    Problem(line, f"duplicate timestamp {ts.isoformat()} in series {series!r} (first at line {first})")
                )
            before = known.get((series, ts))
            if before is not None and before != number:
                problems.append(
                    Problem(
                        line, f"series {series!r} already has {before:g} at {ts.isoformat()}; an observation is final"
                    )
                )
        problems.sort(key=lambda p: p.line or 0)
        if problems and not skip_invalid:
            raise DropRejected(source, problems)
        bad = {p.line for p in problems}
        keep = [line not in bad for line in lines]
        clean = pd.DataFrame(
            {
                SERIES: [s for s, k in zip(ids, keep, strict=True) if k],
                DS: pd.to_datetime([t for t, k in zip(times, keep, strict=True) if k]),
                Y: np.asarray([v for v, k in zip(values, keep, strict=True) if k], dtype=np.float64),
            }
        )
        if clean.empty:
            raise DropRejected(source, [*problems, Problem(None, "no valid rows left")])
        new_lines = {(s, t): line for s, t, line, k in zip(ids, times, lines, keep, strict=True) if k}
        warnings = _check_grid(source, spec, clean, stored, new_lines)
        return Validated(clean, warnings, [str(p) for p in problems])

    def split_keys(self, frame: pd.DataFrame) -> pd.Series:
        return frame[SERIES].astype(str) + "|" + pd.to_datetime(frame[DS]).map(lambda t: t.isoformat())

    def assign_split(self, rows: pd.DataFrame, mode: str, test_fraction: float) -> pd.Series:
        """Every row is history: the test is the most recent windows, chosen when the model is trained."""
        return pd.Series(["train"] * len(rows), index=rows.index, dtype=object)

    def assemble(
        self, frame: pd.DataFrame, spec: ModelSpec | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
        assert isinstance(spec, ForecastingSpec)
        frame = frame.assign(**{DS: pd.to_datetime(frame[DS])})
        rows = frame.drop_duplicates([SERIES, DS], keep="last").sort_values([SERIES, DS], kind="stable")
        rows = rows[[SERIES, DS, Y]].reset_index(drop=True)
        tested = spec.horizon * spec.backtest_windows
        test = rows.groupby(SERIES, sort=False).tail(tested).reset_index(drop=True)
        notes = [
            f"backtest: the last {spec.backtest_windows} window(s) of {spec.horizon} points of each series "
            f"(test from {test[DS].min().isoformat()} to {test[DS].max().isoformat()})"
        ]
        return rows, test, notes

    def train_set(self, train: pd.DataFrame, spec: ModelSpec | None = None) -> TrainSet:
        assert isinstance(spec, ForecastingSpec)
        series = regular_series(train, spec)
        needed = spec.horizon * spec.backtest_windows + max(2 * spec.season, MIN_HISTORY)
        short = [f"{s.id} ({len(s.values)})" for s in series if len(s.values) < needed]
        if short:
            raise ValueError(
                f"needs at least {needed} points per series for {spec.backtest_windows} backtest window(s) of "
                f"{spec.horizon}; too short: {', '.join(short[:10])}"
            )
        return TrainSet(list(series), [s.id for s in series])

    def test_set(self, train: pd.DataFrame, test: pd.DataFrame, spec: ModelSpec | None = None) -> TestSet:
        assert isinstance(spec, ForecastingSpec)
        backtest = Backtest(regular_series(train, spec), spec.backtest_windows, spec.horizon)
        truth, scale, digest = [], [], hashlib.sha256()
        for s in backtest.series:
            for origin in backtest.origins(s):
                actual = s.values[origin : origin + backtest.horizon]
                truth.append(actual)
                scale.append(np.full(len(actual), metrics.seasonal_scale(s.values[:origin], s.season)))
                digest.update(f"{s.id}|{s.timestamps[origin].isoformat()}|".encode() + actual.tobytes())
        context = {"backtest": backtest, "scale": np.concatenate(scale)}
        return TestSet([s.id for s in backtest.series], np.concatenate(truth), digest.hexdigest(), context=context)

    # -- judging -----------------------------------------------------------------------------------
    def cv_folds(self, targets: Sequence[Any], folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        return []  # forecasting families choose their own orders; the backtest is the only judge

    def fold_outputs(self, predictor: Any, inputs: list[Any], labels: list[str]) -> np.ndarray:
        raise NotImplementedError("forecasting has no cross-validation folds")

    def cv_score(self, targets: Sequence[Any], oof: np.ndarray, metric: str, labels: list[str]) -> float:
        raise NotImplementedError("forecasting has no cross-validation folds")

    def gate_outputs(self, predictor: Any, test: TestSet) -> np.ndarray:
        return backtest(predictor.family, predictor.params, test)[0]

    def score(
        self, predictor: Any, test: TestSet, metric: str, *, bootstrap: int, seed: int
    ) -> tuple[dict[str, Any], np.ndarray]:
        mean, lower, upper = backtest(predictor.family, predictor.params, test)
        scale = test.context["scale"]
        result = metrics.score(
            test.truth, mean, scale, metric, bootstrap=bootstrap, seed=seed, lower=lower, upper=upper
        )
        plan: Backtest = test.context["backtest"]
        result["data_end"] = plan.data_end
        result["backtest"] = {
            "windows": plan.windows,
            "horizon": plan.horizon,
            "series": len(plan.series),
            "first_origin": min(s.timestamps[plan.origins(s)[0]] for s in plan.series).isoformat(),
        }
        return result, mean

    def floor(self, train: TrainSet, test: TestSet) -> np.ndarray:
        return backtest(FLOOR, {}, test)[0]

    def paired_test(
        self, test: TestSet, challenger: np.ndarray, champion: np.ndarray, metric: str, *, bootstrap: int, seed: int
    ) -> dict[str, Any]:
        scale = test.context["scale"]
        return metrics.paired_test(test.truth, scale, challenger, champion, metric, bootstrap=bootstrap, seed=seed)

    def is_stale(self, champion_metrics: dict[str, Any], test: TestSet) -> bool:
        end = champion_metrics.get("data_end")
        return end is not None and end < test.context["backtest"].data_end

    # -- watching production -----------------------------------------------------------------------
    def served_errors(self, predictor: Any, rows: pd.DataFrame, spec: ModelSpec) -> Errors:
        """Each forecast point of the version whose value a drop has brought since: (value − forecast) / the
        seasonal-naive MAE of its series' history before the forecast, newest first."""
        assert isinstance(spec, ForecastingSpec)
        # only the values at the forecast's times (a dict of the whole history per version was most of a check)
        first = min((pd.Timestamp(t["timestamps"][0]) for t in predictor.table.values()), default=None)
        observed = _stored_values(rows if first is None else rows[pd.to_datetime(rows[DS]) >= first])
        history = {s.id: s for s in regular_series(rows, spec)}
        signed, times = [], []
        for series, table in predictor.table.items():
            s = history.get(series)
            if s is None:
                continue
            stamps = pd.DatetimeIndex(table["timestamps"])
            scale = metrics.seasonal_scale(s.values[: int(s.timestamps.searchsorted(stamps[0]))], s.season)
            for ts, forecast in zip(stamps, table["mean"], strict=True):
                value = observed.get((series, ts))
                if value is not None:
                    signed.append((value - forecast) / scale)
                    times.append(ts.value)
        newest = np.argsort(np.asarray(times, dtype=np.int64), kind="stable")[::-1]
        return Errors(
            "forecast",
            np.asarray(signed, dtype=float)[newest],
            np.asarray(times, dtype=np.int64)[newest],
            predictor.horizon,
        )

    def test_errors(self, predictor: Any, test: TestSet) -> Errors:
        """The backtest's errors (the family refit at each origin, as the version was judged), scaled as MASE's."""
        mean = backtest(predictor.family, predictor.params, test)[0]
        plan: Backtest = test.context["backtest"]
        times = [s.timestamps[o : o + plan.horizon].as_unit("ns").asi8 for s in plan.series for o in plan.origins(s)]
        return Errors("forecast", (test.truth - mean) / test.context["scale"], np.concatenate(times), plan.horizon)


def _stored_values(stored: pd.DataFrame | None) -> dict[tuple[str, pd.Timestamp], float]:
    if stored is None or stored.empty:
        return {}
    stamps = pd.to_datetime(stored[DS])
    return dict(zip(zip(stored[SERIES].astype(str), stamps, strict=True), stored[Y].astype(float), strict=True))


def _check_grid(
    source: str,
    spec: ForecastingSpec,
    clean: pd.DataFrame,
    stored: pd.DataFrame | None,
    new_lines: dict[tuple[str, pd.Timestamp], int],
) -> list[str]:
    """Reject timestamps off the series' grid and gaps over `max_gap`; warn about the gaps interpolated."""
    rows = clean if stored is None else pd.concat([stored[[SERIES, DS, Y]], clean], ignore_index=True)
    rows = rows.assign(**{DS: pd.to_datetime(rows[DS])})
    problems, warnings = [], []
    for series, group in rows.groupby(SERIES, sort=True):
        stamps = pd.DatetimeIndex(sorted(set(group[DS])))
        widest = _gap_past_max(stamps, spec)
        if widest is not None:
            before, after = stamps[widest], stamps[widest + 1]
            problems.append(
                Problem(
                    new_lines.get((str(series), after)),
                    f"series {series!r}: more than {spec.max_gap} missing period(s) between {before.isoformat()} "
                    f"and {after.isoformat()} (max_gap {spec.max_gap})",
                )
            )
            continue
        grid = pd.date_range(stamps[0], stamps[-1], freq=spec.freq)
        position = grid.get_indexer(stamps)
        for ts in stamps[position < 0]:
            problems.append(
                Problem(
                    new_lines.get((str(series), ts)),
                    f"{ts.isoformat()} is not on the {spec.freq} grid of series "
                    f"{series!r} (which starts at {stamps[0].isoformat()})",
                )
            )
        on_grid = position >= 0
        steps, stamps = np.diff(position[on_grid]), stamps[on_grid]
        for i in np.flatnonzero(steps > 1):
            gap, after = int(steps[i] - 1), stamps[i + 1]
            what = f"series {series!r}: {gap} missing period(s) between {stamps[i].isoformat()} and {after.isoformat()}"
            if gap > spec.max_gap:
                problems.append(Problem(new_lines.get((str(series), after)), f"{what} (max_gap {spec.max_gap})"))
            else:
                warnings.append(f"{what}: interpolated")
    if problems:
        raise DropRejected(source, problems)
    return warnings


def _gap_past_max(stamps: pd.DatetimeIndex, spec: ForecastingSpec) -> int | None:
    """For a fixed-length frequency (hours, minutes, days ...), the index of the widest step when the series' span
    holds more periods than its points with gaps of `max_gap` can reach — a gap over `max_gap` for sure, found
    without building a grid of (say) every second between 1900 and 2200. None: the grid is small enough to build
    (any other frequency has periods of a day or more)."""
    offset = to_offset(spec.freq)
    if not isinstance(offset, Tick) or len(stamps) < 2:
        return None
    periods = (stamps[-1] - stamps[0]) // pd.Timedelta(offset)
    if periods <= (len(stamps) - 1) * (spec.max_gap + 1):
        return None
    return int(np.argmax(np.diff(stamps.asi8)))


def regular_series(rows: pd.DataFrame, spec: ForecastingSpec) -> list[Series]:
    """Each series on its full grid, the (tolerated) gaps filled by linear interpolation."""
    out = []
    for series, group in rows.groupby(SERIES, sort=True):
        values = group.set_index(pd.to_datetime(group[DS]))[Y].astype(float)
        grid = pd.date_range(values.index.min(), values.index.max(), freq=spec.freq)
        filled = values.reindex(grid).interpolate(limit_direction="both")
        out.append(Series(str(series), grid[0], filled.to_numpy(), spec.freq, spec.season, spec.horizon))
    return out


_MEMO: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def backtest(family_name: str, params: dict[str, Any], test: TestSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, lower, upper) of the family refit at every origin, in the order of `test.truth`. Memoised per
    (family, params, test set): the evaluation and the gate ask for the same backtest."""
    key = (family_name, json.dumps(params, sort_keys=True), test.hash)
    if key not in _MEMO:
        plan: Backtest = test.context["backtest"]
        family = get_family(family_name)
        assert isinstance(family, ForecastFamily)
        parts: dict[tuple[int, int], Any] = {}
        for window in range(plan.windows):
            heads = [s.head(plan.origins(s)[window]) for s in plan.series]
            for i, forecast in enumerate(family.forecast(heads, params, 0)):
                parts[i, window] = forecast
        ordered = [parts[i, w] for i in range(len(plan.series)) for w in range(plan.windows)]
        result = tuple(np.concatenate([getattr(f, name) for f in ordered]) for name in ("mean", "lower", "upper"))
        while len(_MEMO) >= MEMO_SIZE:
            del _MEMO[next(iter(_MEMO))]
        _MEMO[key] = result  # type: ignore[assignment]
    return _MEMO[key]
