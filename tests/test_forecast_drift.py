"""Forecasting drift on a real series (daily maximum temperatures in Melbourne): the forecasts production served meet
the values later drops bring; their errors, against the backtest errors of the version that made them, stay quiet
without a shift, alert on a level shift within a few points and give no verdict on too few points — through
`shoal drift`, the worker's checks, the alerts route, the dashboard and `retrain.on_drift`."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import FAST_WORKSPACE, read_csv, write_rows
from serve_fixtures import POLL_S, running
from shoal.cli import app
from shoal.data.ingest import ingest_file
from shoal.evaluate.forecasting import seasonal_scale
from shoal.families import get_family
from shoal.monitor import DRIFT_EVENT
from shoal.monitor.drift import Verdict, check_errors
from shoal.monitor.stats import mean_shift_test
from shoal.monitor.watch import latest_window
from shoal.registry import PRODUCTION
from shoal.registry.database import now
from shoal.registry.jobs import JobQueue
from shoal.tasks import get_task
from shoal.tasks.base import Errors
from shoal.tasks.forecasting.kind import DS, SERIES, Y, regular_series
from shoal.tasks.forecasting.spec import ForecastingSpec
from shoal.train.trainer import train_models
from shoal.worker.drift import DriftChecks
from shoal.worker.triggers import Triggers, schedule_slot
from shoal.workspace import REGISTRY_ENV, Workspace

HISTORY, HORIZON, WINDOWS, WINDOW, MIN_POINTS = 3000, 30, 12, 60, 20
LEVEL = 1 / 168  # an hourly check's level under an alert budget of one false alarm a week
SHIFT = 3.0  # the level shift, in the series' seasonal-naive MAEs (the unit the errors are scaled to)
DETECTED_WITHIN = 22  # realised points after the shift


@pytest.fixture(scope="module")
def temperatures() -> pd.DataFrame:
    return read_csv("daily_max_temperatures/daily-max-temperatures.csv")


@pytest.fixture(scope="module")
def forecaster(tmp_path_factory: pytest.TempPathFactory, temperatures: pd.DataFrame) -> Path:
    """A workspace with `temps` trained on the first HISTORY days (gbm-lags against the seasonal-naive floor), its
    backtest a year long: the reference a forecast's realised errors are judged against."""
    root = tmp_path_factory.mktemp("forecast") / "trained"
    root.mkdir()
    model = {
        "task": "forecasting",
        "time_column": "Date",
        "value_column": "Temperature",
        "freq": "D",
        "horizon": HORIZON,
        "backtest_windows": WINDOWS,
        "families": ["seasonal-naive", "gbm-lags"],
        "retrain": {"on_new_data": False, "on_drift": True},
        "monitor": {"every": "1h", "window": WINDOW, "min_samples": MIN_POINTS},
    }
    fleet = {
        "workspace": {**FAST_WORKSPACE, "n_jobs": 1, "server": {"poll_interval_s": POLL_S}},
        "models": {"temps": model},
    }
    (root / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(REGISTRY_ENV, raising=False)
        ws = Workspace(root)
        ingest_file(ws, "temps", write_rows(root.parent / "history.csv", temperatures.iloc[:HISTORY]))
        [report] = train_models(ws, ["temps"])
        assert report.error is None, report.error
        assert ws.registry.alias("temps", PRODUCTION) is not None
        ws.close()
    return root


@pytest.fixture
def workspace(forecaster: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    shutil.copytree(forecaster, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


def realised(temperatures: pd.DataFrame, days: slice, shift: float = 0.0) -> pd.DataFrame:
    """The days after the history, `shift` seasonal-naive MAEs higher than they were."""
    mae = seasonal_scale(temperatures["Temperature"].to_numpy()[:HISTORY], 7)
    rows = temperatures.iloc[HISTORY:].iloc[days]
    return rows.assign(Temperature=(rows["Temperature"] + shift * mae).round(3))


def arrive(ws: Workspace, rows: pd.DataFrame, folder: Path) -> None:
    """Realised values arrive as a drop of the series, as `shoal ingest` or the inbox brings them."""
    name = f"{rows['Date'].iloc[0]}-{len(rows)}.csv"
    ingest_file(ws, "temps", write_rows(folder / name, rows))


def watch(ws: Workspace) -> Verdict:
    return latest_window(ws, "temps", window=WINDOW, min_samples=MIN_POINTS, level=LEVEL).verdict


def test_a_forecasts_errors_correlated_over_its_horizon_are_not_taken_for_independent_ones() -> None:
    """Each path's errors share a level (a forecast misses a whole spell of weather): counted as independent points,
    two samples of such paths differ "significantly" far more often than the level says; as blocks, as often."""
    rng = np.random.default_rng(0)
    horizon, trials = 10, 400

    def paths(count: int, start: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        errors = (shift + rng.normal(size=(count, 1)) + 0.3 * rng.normal(size=(count, horizon))).ravel()
        return errors, np.arange(start, start + count * horizon)

    blocks = [mean_shift_test(paths(6, 0), paths(4, 100), block=horizon)[1] for _ in range(trials)]
    points = [mean_shift_test(paths(6, 0), paths(4, 100), block=1)[1] for _ in range(trials)]
    assert np.mean(np.array(blocks) < 0.05) < 0.08  # the horizon's correlation allowed for: the level
    # as points, their horizon's correlation only guessed from neighbours' (`effective_blocks`): too many alarms
    assert np.mean(np.array(points) < 0.05) > 0.1
    assert mean_shift_test(paths(6, 0), paths(4, 100, shift=4.0), block=horizon)[1] < 0.01
    with pytest.raises(ValueError, match="2 blocks of 10 times; a comparison needs at least three"):
        mean_shift_test(paths(1, 0), paths(1, 100), block=horizon)


def test_calm_windows_of_a_real_backtest_alert_within_the_level(temperatures: pd.DataFrame) -> None:
    """Ten years of a seasonal-naive forecaster's backtest errors on the temperatures (horizon 7): windows of two
    forecasts' realised errors against a year of forecasts before them (a backtest of 52 windows), none of it shifted.
    A season's spells of large errors span many forecasts and skew their mean sizes: tested as independent, normal
    block means, calm windows alerted several times as often as the level says (21 in these 600 at 0.6%)."""
    spec = ForecastingSpec(
        task="forecasting", freq="D", horizon=7, backtest_windows=100, families=["seasonal-naive"], time_column="Date"
    )
    task, family = get_task("forecasting"), get_family("seasonal-naive")
    rows = pd.DataFrame(
        {SERIES: "series", DS: pd.to_datetime(temperatures["Date"]), Y: temperatures["Temperature"].astype(float)}
    )
    backtests = []
    for end in range(len(rows), 2 * 365, -spec.horizon * spec.backtest_windows):  # each a 700-day backtest
        history = rows.iloc[:end]
        version = family.fit(regular_series(history, spec), [], {}, 0)
        backtests.append(task.test_errors(version, task.test_set(history, history, spec)))
    signed = np.concatenate([b.signed for b in reversed(backtests)])
    times = np.concatenate([b.times for b in reversed(backtests)])
    assert np.all(np.diff(times) > 0) and len(signed) >= 3500
    reference, served, windows = 52 * spec.horizon, 2 * spec.horizon, 600
    starts = np.random.default_rng(0).integers(reference, len(signed) - served, windows)
    verdicts = [
        check_errors(
            lambda s=s: Errors("forecast", signed[s - reference : s], times[s - reference : s], spec.horizon),
            Errors("forecast", signed[s : s + served][::-1], times[s : s + served][::-1], spec.horizon),
            level=LEVEL,
            min_samples=served,
        )
        for s in starts
    ]
    assert all(v.pending is None for v in verdicts)
    alarms = sum(v.drifted for v in verdicts)
    assert alarms <= 2 * LEVEL * windows, f"{alarms} false alarms in {windows} calm windows at level {LEVEL:.4f}"
    sizes = np.array([v.findings[1].p_value for v in verdicts])
    assert np.mean(sizes < 0.05) < 0.08  # the size test's p-values about uniform in the tail, not piled up near 0


def test_realised_values_like_the_past_pass_and_a_level_shift_alerts_within_a_few_points(
    forecaster: Path, temperatures: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    # ten days, nine more, then one day's value at a time, checked after each drop
    drops = [slice(0, 10), slice(10, MIN_POINTS - 1), *(slice(d, d + 1) for d in range(MIN_POINTS - 1, HORIZON))]
    checked: dict[str, list[Verdict]] = {}
    for name, shift in (("calm", 0.0), ("shifted", SHIFT)):
        shutil.copytree(forecaster, tmp_path / name)
        ws = Workspace(tmp_path / name)
        checked[name] = []
        for days in drops:
            arrive(ws, realised(temperatures, days, shift), tmp_path)
            checked[name].append(watch(ws))
        ws.close()
    calm, shifted = checked["calm"], checked["shifted"]
    assert [v.n for v in calm] == [10, *range(MIN_POINTS - 1, HORIZON + 1)]
    assert all(v.pending is not None and not v.findings for v in calm[:2])
    assert calm[0].summary() == "10 realised forecast points in the window; a verdict needs at least 20"
    assert all(v.pending is None for v in calm[2:])
    assert not any(v.drifted for v in calm), [v.summary() for v in calm if v.drifted]
    assert [f.test.split(" vs ")[0] for f in calm[-1].findings] == [
        "forecast bias (mean scaled error)",
        "forecast error (mean |scaled error|)",
    ]
    alerts = [v.n for v in shifted if v.drifted]
    assert alerts and alerts[0] <= DETECTED_WITHIN, [v.summary() for v in shifted]
    assert "drift in forecast bias (mean scaled error)" in shifted[-1].summary()
    bias = shifted[-1].findings[0].statistic
    assert SHIFT / 2 < bias < 2 * SHIFT  # about the shift, in seasonal-naive MAEs


def test_shoal_drift_says_why_there_is_no_verdict_then_alerts(
    workspace: Workspace, temperatures: pd.DataFrame, tmp_path: Path
) -> None:
    runner = CliRunner()
    served = f"the forecasts of v{workspace.registry.alias('temps', PRODUCTION)}"

    def drift(*options: str) -> tuple[int, str]:
        result = runner.invoke(
            app, ["drift", "temps", "-w", str(workspace.root), "--window", str(WINDOW), "--min-samples", "20", *options]
        )
        return result.exit_code, result.output

    code, output = drift()
    assert code == 0 and "0 realised forecast points in the window; a verdict needs at least 20" in output, output
    arrive(workspace, realised(temperatures, slice(0, 10), SHIFT), tmp_path)
    code, output = drift("--json")
    report = json.loads(output)
    assert code == 0 and report["n"] == 10 and report["tests"] == [] and report["drifted"] is False
    assert report["pending"] == "10 realised forecast points in the window; a verdict needs at least 20"
    assert report["source"].startswith(served)
    arrive(workspace, realised(temperatures, slice(10, HORIZON), SHIFT), tmp_path)
    code, output = drift()
    assert code == 1, output
    assert f"30 realised forecast points: {served} against" in output
    assert "drift in forecast bias (mean scaled error)" in output


def test_a_forecast_drift_alert_is_listed_drawn_and_retrains_on_the_realised_values(
    workspace: Workspace, temperatures: pd.DataFrame, tmp_path: Path
) -> None:
    ws = workspace
    first = ws.registry.alias("temps", PRODUCTION)
    arrive(ws, realised(temperatures, slice(0, HORIZON), SHIFT), tmp_path)
    queue = JobQueue(ws.registry)
    checks = DriftChecks(ws, Triggers(ws, queue))
    start = schedule_slot("1h", now())
    with running(ws) as url:
        moved = checks.check("temps", at=start)
        assert moved is not None and moved.verdict.drifted, moved and moved.verdict.summary()
        [alert] = ws.registry.events("temps", kind=DRIFT_EVENT)
        [job] = queue.jobs("temps")  # retrain.on_drift: the realised values are data not trained on yet
        assert job.reason.startswith("drift: drift in forecast bias")
        assert f"retrain job {job.id} queued on {HORIZON} new row(s)" in alert.message
        assert alert.payload["source"] == f"the forecasts of v{first} against v{first}'s test set"
        listed = httpx.get(f"{url}/v1/models/temps/alerts", timeout=10).json()["alerts"]
        assert [a["id"] for a in listed] == [alert.id]
        page = httpx.get(f"{url}/ui/models/temps", params={"fragment": "1"}, timeout=30).text
        assert 'id="plot-checks"' in page and page.count('class="series"') == 1 and page.count('class="alert"') == 1

        [report] = train_models(ws, ["temps"])  # the job's training: forecasts from the newest value on
        assert report.error is None, report.error
        second = ws.registry.alias("temps", PRODUCTION)
        assert second is not None and second != first
        arrive(ws, realised(temperatures, slice(HORIZON, HORIZON + 10), SHIFT), tmp_path)
        again = checks.check("temps", at=start + timedelta(hours=1))
        assert again is not None and again.version == second
        # the new version's ten realised points, then the first version's newest: both judged against the backtest
        # of the first, whose test set ends before any of them
        assert again.source == f"the forecasts of v{first}..v{second} against v{first}'s test set"
        assert again.verdict.n == 40
