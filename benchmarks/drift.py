"""Drift detection on synthetic shifts: detection delay, false alarms on traffic that has not moved, and the accuracy
estimated without labels (CBPE's idea) against the real one.

    .venv/bin/python benchmarks/drift.py [--repeat 10] [--windows 200] [--step 50] [--budget 1] [--checks-per-week 168]
        [--only text|tabular|forecasting|cbpe ...]

Three models, each fitted by its shoal family on one part of a shared dataset (A); its reference (`shoal.monitor`)
holds 500 training inputs of A and its answers on a held-out part B; traffic is drawn from a third part C, which
neither saw:
- `banking77` (`tfidf-logreg`, Banking77 train split cut in three): traffic moves to 10 of the 77 intents;
- `spam` (`tfidf-logreg`, SMS Spam Collection cut in three): traffic becomes TweetEval offensive tweets;
- `housing` (`ridge`, California housing cut in three): traffic keeps its rows, `median_income` times 1.3.
A stream is 400 unshifted inputs, then shifted ones; a window of the last 200 inputs is checked every `--step` inputs
at the level the alert budget gives (`--budget` false alarms per week with `--checks-per-week` checks). Delay: shifted
inputs seen when a check first alerts (median and worst of `--repeat` streams); alarms before the shift are counted.
False alarms: `--windows` windows of 200 inputs drawn from C, each checked at that level (expected: windows x level).
CBPE: `banking77`'s temperature fitted on B; windows of 200 inputs of C whose intents are drawn with a skew (a
different random subset of 20 intents made 5x likelier in each window); estimated vs real accuracy per window.

Forecasting (`--forecast-family`, default `seasonal-naive`; daily maximum temperatures, horizon 7, 12 backtest
windows): production retrains every day on the values realised so far (a new version, as the worker does on each
daily drop) and each day's check reads the errors of the newest versions' realised forecast points (window
`--forecast-window`) against the backtest errors of the oldest of them (`TaskKind.served_errors` / `test_errors`,
`shoal.monitor.drift.check_errors`). A stream starts at a random day of the series' last eight years; from its
day 30 every realised value is `--forecast-shift` times the series' seasonal-naive MAE higher. Delay: realised days
after the shift at the first alert; false alarms: checks of `--windows` streams without the shift, one full window each.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from harness import DATA
from machine import print_command, print_machine

from shoal.cascade.calibration import confidence, fit_temperature
from shoal.evaluate.forecasting import seasonal_scale
from shoal.families import get_family
from shoal.monitor.drift import Reference, Verdict, check, check_errors, level_for_budget
from shoal.monitor.estimate import estimated_accuracy
from shoal.tasks import get_task
from shoal.tasks.base import Errors
from shoal.tasks.forecasting.kind import DS, SERIES, Y, regular_series
from shoal.tasks.forecasting.spec import ForecastingSpec

WINDOW, BEFORE, REFERENCE = 200, 400, 500
PARTS = ("text", "tabular", "forecasting", "cbpe")


@dataclass
class Scenario:
    name: str
    reference: Reference
    calm: pd.DataFrame  # part C: traffic that has not moved
    shifted: pd.DataFrame  # traffic after the shift
    inputs: Callable[[pd.DataFrame], Any]  # rows -> what the model reads (texts, or a frame of features)
    answers: Callable[[pd.DataFrame], list[Any]]  # rows -> the model's answers


def _thirds(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    shuffled = frame.sample(frac=1, random_state=0).reset_index(drop=True)
    a, b = int(len(shuffled) * 0.6), int(len(shuffled) * 0.8)
    return shuffled.iloc[:a], shuffled.iloc[a:b], shuffled.iloc[b:].reset_index(drop=True)


def _text_model(train: pd.DataFrame) -> Any:
    family = get_family("tfidf-logreg")
    return family.fit(train["text"].tolist(), train["label"].tolist(), family.grid(len(train))[0], 0)


def text_scenario(
    name: str, frame: pd.DataFrame, shifted: Callable[[pd.DataFrame], pd.DataFrame]
) -> tuple[Scenario, Any]:
    a, b, c = _thirds(frame)
    model = _text_model(a)

    def answers(rows: pd.DataFrame) -> list[Any]:
        return model.predict(rows["text"].tolist())  # type: ignore[no-any-return]

    reference = Reference.of_texts(a["text"].tolist(), answers(b), size=REFERENCE, seed=0)
    return Scenario(name, reference, c, shifted(c), lambda rows: rows["text"].tolist(), answers), (model, b)


def housing_scenario(data: Any) -> Scenario:
    frame = pd.read_csv(data / "california_housing" / "housing.csv")
    target = "median_house_value"
    a, b, c = _thirds(frame)
    features = [column for column in frame.columns if column != target]
    family = get_family("ridge")
    rows = a[features].to_dict("records")
    model = family.fit(rows, a[target].tolist(), family.grid(len(a))[0], 0)

    def answers(part: pd.DataFrame) -> list[Any]:
        return model.predict_proba(part[features].to_dict("records"))[:, 0].tolist()  # type: ignore[no-any-return]

    reference = Reference.of_rows(a[features], answers(b), size=REFERENCE, seed=0)
    shifted = c.assign(median_income=c["median_income"] * 1.3)
    return Scenario(
        "housing: median_income x 1.3",
        reference,
        c,
        shifted,
        lambda part: part[features].reset_index(drop=True),
        answers,
    )


def delay(scenario: Scenario, level: float, step: int, seed: int) -> tuple[int | None, int]:
    """(shifted inputs seen at the first alerting check after the shift or None, alerts before it) of one stream."""
    rng = np.random.default_rng(seed)
    before = scenario.calm.iloc[rng.choice(len(scenario.calm), BEFORE, replace=False)]
    after = scenario.shifted.iloc[
        rng.choice(len(scenario.shifted), 4 * WINDOW, replace=len(scenario.shifted) < 4 * WINDOW)
    ]
    stream = pd.concat([before, after]).reset_index(drop=True)
    answers = scenario.answers(stream)
    early = 0
    for end in range(WINDOW, len(stream) + 1, step):
        window = stream.iloc[end - WINDOW : end]
        verdict = check(
            scenario.reference,
            scenario.inputs(window),
            answers[end - WINDOW : end],
            level=level,
            min_samples=WINDOW,
            seed=seed + end,
        )
        if verdict.drifted:
            if end <= BEFORE:
                early += 1
            else:
                return end - BEFORE, early
    return None, early


def false_alarms(scenario: Scenario, level: float, windows: int) -> int:
    alarms = 0
    for seed in range(windows):
        rows = scenario.calm.iloc[np.random.default_rng(1000 + seed).choice(len(scenario.calm), WINDOW, replace=False)]
        verdict = check(
            scenario.reference,
            scenario.inputs(rows),
            scenario.answers(rows),
            level=level,
            min_samples=WINDOW,
            seed=seed,
        )
        alarms += verdict.drifted
    return alarms


def cbpe(model: Any, held_out: pd.DataFrame, calm: pd.DataFrame, windows: int) -> list[tuple[float, float]]:
    """(estimated, real) accuracy of `windows` skewed windows of `calm`."""
    truth = np.array([model.labels.index(label) for label in held_out["label"]])
    temperature = fit_temperature(model.predict_proba(held_out["text"].tolist()), truth)
    proba = model.predict_proba(calm["text"].tolist())
    right = np.array(model.labels)[proba.argmax(axis=1)] == calm["label"].to_numpy()
    confident = confidence(proba, temperature)
    intents = sorted(calm["label"].unique())
    pairs = []
    for seed in range(windows):
        rng = np.random.default_rng(seed)
        favoured = set(rng.choice(intents, 20, replace=False))
        weights = np.where(calm["label"].isin(favoured), 5.0, 1.0)
        rows = rng.choice(len(calm), WINDOW, replace=False, p=weights / weights.sum())
        pairs.append((estimated_accuracy(confident[rows]).accuracy, float(right[rows].mean())))
    return pairs


FORECAST_SHIFT_DAY = 30


class ForecastStream:
    """Daily maximum temperatures as a forecaster in production sees them: a version trained each day, the values
    realised since, and each day's check of the newest versions' errors."""

    def __init__(self, family: str, rows: pd.DataFrame, window: int, level: float) -> None:
        self.family, self.window, self.level = family, window, level
        self.rows = rows  # the whole series in the task's columns (series, ds, y)
        self.spec = ForecastingSpec(
            task="forecasting", freq="D", horizon=7, backtest_windows=12, families=[family], time_column="Date"
        )
        self.task = get_task("forecasting")
        self.versions: dict[int, Any] = {}  # origin -> the version trained on the values before it

    def version(self, values: pd.DataFrame, origin: int) -> Any:
        if origin not in self.versions:
            family = get_family(self.family)
            self.versions[origin] = family.fit(regular_series(values.iloc[:origin], self.spec), [], {}, 0)
        return self.versions[origin]

    def verdict(self, values: pd.DataFrame, start: int, day: int) -> Verdict:
        """Day `day`'s check of a stream started at `start` (the values before `start + day` are realised, one
        version trained at each day from `start`)."""
        now = values.iloc[: start + day]
        parts: list[Errors] = []
        oldest = start
        for origin in range(start + day - 1, start - 1, -1):  # newest version first
            errors = self.task.served_errors(self.version(values, origin), now, self.spec)
            parts.append(errors)
            if len(errors):
                oldest = origin
            if sum(map(len, parts)) >= self.window:
                break

        def tested() -> Errors:
            before = values.iloc[:oldest]
            test = self.task.test_set(before, before, self.spec)
            return self.task.test_errors(self.version(values, oldest), test)

        served = Errors.join(parts, self.window)
        return check_errors(tested, served, level=self.level, min_samples=self.window)

    def delay(self, seed: int, shift: float) -> tuple[int | None, int]:
        """(realised days after the shift at the first alert or None, alerts before it) of one stream."""
        rng = np.random.default_rng(seed)
        start = int(rng.integers(2 * 365, len(self.rows) - 4 * FORECAST_SHIFT_DAY))
        mae = seasonal_scale(self.rows[Y].to_numpy()[:start], self.spec.season)
        moved = np.arange(len(self.rows)) >= start + FORECAST_SHIFT_DAY
        values = self.rows.assign(**{Y: self.rows[Y] + shift * mae * moved})
        self.versions = {}
        early = 0
        for day in range(1, 4 * FORECAST_SHIFT_DAY):
            verdict = self.verdict(values, start, day)
            if verdict.drifted:
                if day <= FORECAST_SHIFT_DAY:
                    early += 1
                else:
                    return day - FORECAST_SHIFT_DAY, early
        return None, early

    def false_alarm(self, seed: int) -> bool:
        """One window of a stream without a shift, checked once it is full."""
        rng = np.random.default_rng(10_000 + seed)
        start = int(rng.integers(2 * 365, len(self.rows) - 2 * FORECAST_SHIFT_DAY))
        self.versions = {}
        day = -(-self.window // self.spec.horizon)  # each day brings at most a horizon of points: none full before
        while True:
            verdict = self.verdict(self.rows, start, day)
            if verdict.pending is None:
                return verdict.drifted
            day += 1


def temperatures(data: Any) -> pd.DataFrame:
    frame = pd.read_csv(data / "daily_max_temperatures" / "daily-max-temperatures.csv")
    return pd.DataFrame({SERIES: "series", DS: pd.to_datetime(frame["Date"]), Y: frame["Temperature"].astype(float)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=lambda p: __import__("pathlib").Path(p), default=DATA)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--step", type=int, default=50, help="inputs between two checks of a stream")
    parser.add_argument("--budget", type=float, default=1.0, help="false alarms per week, for the whole fleet's model")
    parser.add_argument("--checks-per-week", type=float, default=168.0)
    parser.add_argument("--forecast-family", default="seasonal-naive", help="seasonal-naive or gbm-lags")
    parser.add_argument("--forecast-window", type=int, default=56, help="realised forecast points a check reads")
    parser.add_argument("--forecast-shift", type=float, default=3.0, help="level shift, in seasonal-naive MAEs")
    parser.add_argument(
        "--only", nargs="+", choices=PARTS, default=list(PARTS), help="run these parts only (default: all)"
    )
    args = parser.parse_args()
    begun = print_machine()
    level = level_for_budget(args.budget, args.checks_per_week)
    print(
        f"alert budget {args.budget:g} per week, {args.checks_per_week:g} checks per week: level {level:.4f} per window"
    )
    banking = pd.read_csv(args.data / "banking77" / "train.csv", keep_default_na=False)
    started = time.perf_counter()
    banking_scenario, (banking_model, banking_b) = text_scenario(
        "banking77: 10 of 77 intents",
        banking,
        lambda c: c[c["label"].isin(sorted(banking["label"].unique())[:10])].reset_index(drop=True),
    )
    scenarios = []
    if "text" in args.only:
        sms = pd.read_csv(args.data / "sms_spam" / "sms_spam.csv", keep_default_na=False)
        tweets = pd.read_csv(args.data / "tweeteval_offensive" / "test.csv", keep_default_na=False)
        spam_scenario, _ = text_scenario("spam: SMS -> TweetEval tweets", sms, lambda c: tweets.assign(label="ham"))
        scenarios += [banking_scenario, spam_scenario]
    if "tabular" in args.only:
        scenarios.append(housing_scenario(args.data))
    print(f"models fitted in {time.perf_counter() - started:.0f} s\n")
    print(
        "| shift | delay, median (inputs) | delay, worst | missed streams | alerts before the shift "
        "| false alarms / windows | expected |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for scenario in scenarios:
        runs = [delay(scenario, level, args.step, seed) for seed in range(args.repeat)]
        found = [d for d, _ in runs if d is not None]
        alarms = false_alarms(scenario, level, args.windows)
        median = f"{statistics.median(found):.0f}" if found else "-"
        worst = f"{max(found)}" if found else "-"
        print(
            f"| {scenario.name} | {median} | {worst} | {args.repeat - len(found)} of {args.repeat} | "
            f"{sum(e for _, e in runs)} | {alarms} / {args.windows} | {args.windows * level:.1f} |",
            flush=True,
        )
    if "forecasting" in args.only:
        stream = ForecastStream(args.forecast_family, temperatures(args.data), args.forecast_window, level)
        runs = [stream.delay(seed, args.forecast_shift) for seed in range(args.repeat)]
        found = [d for d, _ in runs if d is not None]
        alarms = sum(stream.false_alarm(seed) for seed in range(args.windows))
        print(
            f"| temperatures ({args.forecast_family}, window {args.forecast_window} forecast points): level "
            f"+{args.forecast_shift:g} seasonal-naive MAE | {statistics.median(found) if found else '-'} days | "
            f"{max(found) if found else '-'} days | {args.repeat - len(found)} of {args.repeat} | "
            f"{sum(e for _, e in runs)} | {alarms} / {args.windows} | {args.windows * level:.1f} |",
            flush=True,
        )
    if "cbpe" in args.only:
        pairs = cbpe(banking_model, banking_b, banking_scenario.calm, args.windows)
        errors = [abs(e - r) for e, r in pairs]
        print(
            f"\nCBPE on {len(pairs)} skewed banking77 windows of {WINDOW}: real accuracy "
            f"{min(r for _, r in pairs):.3f}..{max(r for _, r in pairs):.3f}; |estimated - real| median "
            f"{statistics.median(errors):.3f}, 90th percentile {float(np.quantile(errors, 0.9)):.3f}, mean signed "
            f"{statistics.mean(e - r for e, r in pairs):+.3f}"
        )
    print_command(begun)


if __name__ == "__main__":
    main()
