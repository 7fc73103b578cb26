"""Forecasting on real series (monthly car sales in Quebec, daily maximum temperatures in Melbourne): drops
rejected whole with reasons, the rolling-origin backtest and its metrics, and a new month dropped into the inbox
of a running `shoal worker` retraining and re-promoting the forecaster while a real server picks it up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from conftest import read_csv, require_statsforecast, write_rows
from serve_fixtures import running, wait_until
from shoal.data.errors import DropRejected
from shoal.data.ingest import ingest_file
from shoal.evaluate.forecasting import metric_values, paired_test, seasonal_scale
from shoal.registry import PRODUCTION
from shoal.train.trainer import train_models


@pytest.fixture(scope="module")
def cars() -> pd.DataFrame:
    return read_csv("monthly_car_sales/monthly-car-sales.csv")


@pytest.fixture(scope="module")
def temperatures() -> pd.DataFrame:
    return read_csv("daily_max_temperatures/daily-max-temperatures.csv")


def car_model(**overrides: object) -> dict[str, object]:
    spec: dict[str, object] = {
        "task": "forecasting",
        "time_column": "Month",
        "value_column": "Sales",
        "freq": "MS",
        "horizon": 12,
        "families": ["seasonal-naive", "gbm-lags"],
        "retrain": {"min_new_rows": 1, "debounce_seconds": 0},
    }
    spec.update(overrides)
    return spec


def test_mase_is_scaled_by_the_seasonal_naive_error_and_the_paired_test_sees_gains() -> None:
    history = np.array([1.0, 2, 3, 4, 2, 3, 4, 5])
    assert seasonal_scale(history, 4) == pytest.approx(1.0)
    truth = np.array([10.0, 20, 30, 40])
    scale = np.full(4, 2.0)
    assert metric_values(truth, truth + 1, scale, "mase") == pytest.approx(0.5)
    assert metric_values(truth, truth, scale, "smape") == 0
    rng = np.random.default_rng(0)
    truth = rng.normal(100, 10, 400)
    scale = np.full(400, 5.0)
    good, bad = truth + rng.normal(0, 2, 400), truth + rng.normal(0, 6, 400)
    gain = paired_test(truth, scale, good, bad, "mase", bootstrap=300, seed=0)
    assert gain["delta"] > 0 and gain["p_value"] < 0.01
    assert paired_test(truth, scale, bad, good, "mase", bootstrap=300, seed=0)["p_value"] > 0.5


def test_bad_drops_are_rejected_whole_with_their_lines(make_workspace, cars: pd.DataFrame, tmp_path: Path) -> None:
    ws = make_workspace({"cars": car_model()})

    def rejected(name: str, frame: pd.DataFrame) -> str:
        with pytest.raises(DropRejected) as caught:
            ingest_file(ws, "cars", write_rows(tmp_path / name, frame))
        return str(caught.value)

    broken = cars.head(84).astype(str)
    broken.loc[3, "Month"] = "1960-13"
    broken.loc[10, "Month"] = broken.loc[9, "Month"]
    broken.loc[20, "Sales"] = "many"
    message = rejected("broken.csv", broken)
    assert "line 5: column 'Month': '1960-13' is not an ISO 8601 timestamp" in message
    assert "line 12: duplicate timestamp 1960-10-01T00:00:00 in series 'series' (first at line 11)" in message
    assert "line 22: column 'Sales': 'many' is not a number" in message
    assert ws.registry.model_names() == []  # nothing was written

    first = ingest_file(ws, "cars", write_rows(tmp_path / "first.csv", cars.head(84)))  # 1960-01 .. 1966-12
    assert first.created and first.drop.n_rows == 84 and first.drop.n_test == 0
    message = rejected("gap.csv", cars.iloc[86:90])  # 1967-03 .. : two months missing
    assert "line 2: series 'series': 2 missing period(s) between 1966-12-01T00:00:00 and 1967-03-01" in message
    assert "(max_gap 1)" in message
    changed = cars.iloc[83:85].copy()
    changed.iloc[0, 1] = 1
    assert "already has" in rejected("changed.csv", changed)
    assert "is not on the MS grid" in rejected("mid.csv", pd.DataFrame({"Month": ["1967-01-15"], "Sales": [5]}))
    assert len(ws.registry.drops("cars")) == 1

    one_gap = cars.iloc[85:90]  # 1967-02 ..: one month missing is within max_gap and interpolated
    accepted = ingest_file(ws, "cars", write_rows(tmp_path / "one_gap.csv", one_gap))
    assert any("1 missing period(s) between 1966-12-01" in w and "interpolated" in w for w in accepted.warnings)


@pytest.mark.slow
def test_backtest_metrics_and_the_gate_on_daily_temperatures(
    make_workspace, temperatures: pd.DataFrame, tmp_path: Path
) -> None:
    spec = car_model(time_column="Date", value_column="Temperature", freq="D", horizon=30)
    ws = make_workspace({"temps": spec})
    # two calendar days are absent from the source: tolerated (max_gap 1) and interpolated
    drop = ingest_file(ws, "temps", write_rows(tmp_path / "temps.csv", temperatures))
    assert sum("interpolated" in w for w in drop.warnings) == 2
    [report] = train_models(ws)
    assert report.error is None, report.error
    by_family = {c.family: c.version.metrics for c in report.candidates if c.version is not None}
    assert set(by_family) == {"seasonal-naive", "gbm-lags"}
    for m in by_family.values():
        assert m.n_test == 90 and m.scores["backtest"] == {
            "windows": 3,
            "horizon": 30,
            "series": 1,
            "first_origin": "1990-10-03T00:00:00",
        }
        assert m.ci[0] <= m.scores["mase"] <= m.ci[1] and 0 <= m.scores["interval_coverage"] <= 1
    assert by_family["gbm-lags"].value < by_family["seasonal-naive"].value
    assert report.decision is not None and "seasonal-naive floor" in report.decision.reason


def test_a_new_month_in_the_inbox_retrains_and_repromotes_while_worker_and_server_run(
    make_workspace, cars: pd.DataFrame, tmp_path: Path
) -> None:
    ws = make_workspace({"cars": car_model()}, n_jobs=1, server={"poll_interval_s": 0.2})
    ingest_file(ws, "cars", write_rows(tmp_path / "history.csv", cars.iloc[:96]))  # up to 1967-12
    [report] = train_models(ws)
    assert report.error is None, report.error
    first = ws.registry.alias("cars", PRODUCTION)
    assert first is not None  # no family beats the seasonal-naive floor here: the floor serves
    family = ws.registry.version("cars", first).family
    inbox = ws.inbox("cars")
    inbox.mkdir(parents=True)
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "shoal", "worker", "--poll", "0.2", "-w", str(ws.root)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with running(ws) as url:
            endpoint = f"{url}/v1/models/cars/predict"

            def first_month() -> str:
                answer = httpx.post(endpoint, json={"inputs": ["series"]})
                assert answer.status_code == 200, answer.text
                [prediction] = answer.json()["predictions"]
                assert len(prediction["forecast"]) == 12 and prediction["level"] == 0.9
                return str(prediction["forecast"][0]["timestamp"])

            assert first_month() == "1968-01-01T00:00:00"
            unknown = httpx.post(endpoint, json={"inputs": ["ontario"]})
            assert unknown.status_code == 422 and "unknown series 'ontario'" in unknown.text
            assert httpx.post(endpoint, json={"inputs": [3]}).status_code == 422

            write_rows(inbox / "1968-01.csv", cars.iloc[96:97])
            started = time.monotonic()
            wait_until(lambda: first_month() == "1968-02-01T00:00:00", "the new forecast was not served", 120)
            seconds = time.monotonic() - started
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    assert (inbox / "processed" / "1968-01.csv").exists()
    second = ws.registry.alias("cars", PRODUCTION)
    assert second is not None and second != first
    version = ws.registry.version("cars", second)
    assert version.family == family and version.metrics.scores["data_end"] == "1968-01-01T00:00:00"
    [promoted] = [e for e in ws.registry.events("cars") if e.kind == "promoted" and e.version == second]
    assert "promoted" in promoted.message
    assert seconds < 120


def test_a_forecaster_no_family_beats_serves_the_seasonal_naive_floor(
    make_workspace, cars: pd.DataFrame, tmp_path: Path
) -> None:
    """Monthly car sales: no family beats the seasonal-naive floor, yet the model serves. For forecasting the
    floor is a real forecaster: it is trained even when the fleet file leaves it out, and promoted as the floor."""
    from typer.testing import CliRunner

    from shoal.cli import app

    ws = make_workspace({"cars": car_model(families=["gbm-lags"])})
    ingest_file(ws, "cars", write_rows(tmp_path / "cars.csv", cars))
    [report] = train_models(ws)
    assert report.error is None, report.error
    versions = {c.family: c.version for c in report.candidates if c.version is not None}
    assert [c.family for c in report.candidates] == ["gbm-lags", "seasonal-naive"] and len(versions) == 2
    floor, gbm = versions["seasonal-naive"], versions["gbm-lags"]
    assert floor.metrics.value == pytest.approx(0.926, abs=0.001) and floor.metrics.value < gbm.metrics.value
    decision = report.decision
    assert decision is not None and decision.promote
    assert decision.reason.startswith(f"promoted the seasonal-naive floor (v{floor.number}): no candidate beats it")
    assert "challenger makes the same predictions" in decision.reason
    assert ws.registry.alias("cars", PRODUCTION) == report.production == floor.number
    [promoted] = [e for e in ws.registry.events("cars") if e.kind == "promoted"]
    assert promoted.version == floor.number and promoted.message == decision.reason
    assert promoted.payload["decision"]["promote"] is True and promoted.payload["champion"] is None
    shown = CliRunner().invoke(app, ["eval", "cars", "--json", "-w", str(ws.root)])
    assert shown.exit_code == 0, shown.output
    assert '"family": "seasonal-naive"' in shown.output


@pytest.mark.forecasting
@pytest.mark.parametrize("name", ["auto-ets", "auto-arima"])
def test_statsforecast_families_forecast_with_intervals(name: str, cars: pd.DataFrame) -> None:
    """Needs the `forecasting` extra (statsforecast): skipped without it, run by `make test-forecasting`."""
    require_statsforecast()
    from shoal.families import get_family
    from shoal.families.forecast import Series

    values = cars["Sales"].to_numpy(dtype=float)
    history = Series("series", pd.Timestamp("1960-01-01"), values[:96], "MS", 12, 12)
    [forecast] = get_family(name).forecast([history], {}, 0)
    assert (
        len(forecast.mean) == 12 and np.all(forecast.lower < forecast.mean) and np.all(forecast.mean < forecast.upper)
    )
    error = np.abs(forecast.mean - values[96:]).mean() / seasonal_scale(values[:96], 12)
    repeat_last_year = np.abs(values[84:96] - values[96:]).mean() / seasonal_scale(values[:96], 12)  # the floor
    assert error < repeat_last_year, f"{name}: scaled error {error:.2f} vs {repeat_last_year:.2f} for seasonal naive"
    predictor = get_family(name).fit([history], ["series"], {}, 0)
    assert predictor.timestamps("series")[0] == "1968-01-01T00:00:00"


def test_shoal_add_takes_the_forecasting_columns_freq_and_horizon(make_workspace) -> None:
    from typer.testing import CliRunner

    from shoal.cli import app

    ws, runner = make_workspace({}), CliRunner()
    args = ["add", "sales", "--task", "forecasting", "--id-column", "region", "--time-column", "Month"]
    added = runner.invoke(
        app, [*args, "--value-column", "Sales", "--freq", "MS", "--horizon", "12", "-w", str(ws.root)]
    )
    assert added.exit_code == 0, added.output
    spec = ws.reload().model("sales")
    assert (spec.id_column, spec.time_column, spec.value_column, spec.freq, spec.horizon) == (
        "region",
        "Month",
        "Sales",
        "MS",
        12,
    )
    assert spec.metric == "mase" and spec.families[0] == "seasonal-naive" and spec.season == 12
    no_horizon = runner.invoke(app, ["add", "other", "--task", "forecasting", "--freq", "MS", "-w", str(ws.root)])
    assert no_horizon.exit_code != 0 and "needs freq and horizon" in str(no_horizon.exception)
    bad = runner.invoke(
        app, ["add", "bad", "--task", "forecasting", "--freq", "fortnightly", "--horizon", "2", "-w", str(ws.root)]
    )
    assert bad.exit_code != 0 and "not a pandas frequency" in str(bad.exception)
