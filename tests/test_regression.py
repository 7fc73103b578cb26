"""Regression end to end on real California housing data: the schema fixed by the first drop, drops rejected
whole with reasons, metrics and the paired test, the R² floor of the promoted model on a hash split, the gate
refusing a retrain on the same data, and predictions with intervals over real HTTP (422, never 500)."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from typer.testing import CliRunner

from conftest import read_csv, write_rows
from serve_fixtures import running
from shoal.cli import app
from shoal.data.errors import DropRejected
from shoal.data.ingest import ingest_file
from shoal.evaluate.regression import metric_values, paired_test, score
from shoal.registry import PRODUCTION
from shoal.train.trainer import train_models

TARGET = "median_house_value"


@pytest.fixture(scope="module")
def housing() -> pd.DataFrame:
    return read_csv("california_housing/housing.csv")


def house_model(**overrides: object) -> dict[str, object]:
    spec: dict[str, object] = {"task": "regression", "target_column": TARGET, "cv_folds": 2}
    spec.update(overrides)
    return spec


def test_metrics_match_sklearn_and_the_paired_test_sees_real_gains_only() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(100, 20, 800)
    pred = truth + rng.normal(0, 10, 800)
    assert metric_values(truth, pred, "mae") == pytest.approx(mean_absolute_error(truth, pred))
    assert metric_values(truth, pred, "rmse") == pytest.approx(mean_squared_error(truth, pred) ** 0.5)
    assert metric_values(truth, pred, "r2") == pytest.approx(r2_score(truth, pred))
    assert metric_values(truth, pred, "mape") == pytest.approx(np.mean(np.abs(truth - pred) / truth))
    result = score(truth, pred, "mae", bootstrap=300, seed=0, lower=pred - 20, upper=pred + 20)
    assert result["ci"][0] < result["mae"] < result["ci"][1]
    assert 0.9 < result["interval_coverage"] < 1.0

    better = truth + rng.normal(0, 7, 800)
    for metric in ("mae", "rmse", "r2", "mape"):
        gain = paired_test(truth, better, pred, metric, bootstrap=300, seed=0)
        assert gain["delta"] > 0 and gain["p_value"] < 0.01, (metric, gain)
        worse = paired_test(truth, pred, better, metric, bootstrap=300, seed=0)
        assert worse["delta"] < 0 and worse["p_value"] > 0.5
    same = paired_test(truth, pred, pred, "mae", bootstrap=300, seed=0)
    assert same["delta"] == 0 and same["p_value"] > 0.5


def test_the_first_drop_fixes_the_schema_and_bad_drops_are_rejected_whole(
    make_workspace, housing: pd.DataFrame, tmp_path: Path
) -> None:
    ws = make_workspace({"house": house_model()})
    sample = housing.head(300)
    first = ingest_file(ws, "house", write_rows(tmp_path / "first.csv", sample))
    assert first.created and first.drop.n_rows == 300 and first.drop.n_test > 0
    # total_bedrooms has empty cells in the source: missing feature values are kept for the family to handle
    assert (housing["total_bedrooms"] == "").any()

    def rejected(name: str, frame: pd.DataFrame) -> str:
        with pytest.raises(DropRejected) as caught:
            ingest_file(ws, "house", write_rows(tmp_path / name, frame))
        return str(caught.value)

    message = rejected("new.csv", housing.iloc[300:320].assign(pool="yes"))
    assert "new column(s) pool" in message and "ocean_proximity (categorical)" in message
    message = rejected("missing.csv", housing.iloc[300:320].drop(columns=["median_income"]))
    assert "missing column(s) median_income" in message
    wrong = housing.iloc[300:320].astype(str)
    wrong.iloc[4, wrong.columns.get_loc("housing_median_age")] = "old"
    wrong.iloc[7, wrong.columns.get_loc(TARGET)] = ""
    message = rejected("types.csv", wrong)
    assert "line 6: column 'housing_median_age': 'old' is not a number" in message
    assert f"line 9: target '{TARGET}': missing" in message
    assert len(ws.registry.drops("house")) == 1  # nothing was written

    skipped = ingest_file(ws, "house", write_rows(tmp_path / "types.csv", wrong), skip_invalid=True)
    assert skipped.drop.n_rows == 18 and len(skipped.skipped) == 2

    # the same rows with the columns in another order are the same rows
    again = ingest_file(ws, "house", write_rows(tmp_path / "again.csv", sample[list(reversed(sample.columns))]))
    assert not again.created


@pytest.mark.slow
@pytest.mark.timeout(900)  # the default families' search, twice on 16,500 rows in this process (5.5 min at load 20)
def test_california_housing_r2_floor_and_the_gate_refuses_a_same_data_retrain(
    make_workspace, housing: pd.DataFrame, tmp_path: Path
) -> None:
    ws = make_workspace({"house": house_model()}, n_jobs=1)  # in-process folds: no worker pool to start
    ingest_file(ws, "house", write_rows(tmp_path / "housing.csv", housing))  # split by a hash of the features
    [report] = train_models(ws)
    assert report.error is None, report.error
    assert report.decision is not None and report.decision.promote, report.decision
    assert "mean floor" in report.decision.reason and "absolute errors" in report.decision.test
    production = ws.registry.version("house", ws.registry.alias("house", PRODUCTION))
    m = production.metrics
    assert production.family == "gbm-tuned"
    assert m.scores["r2"] >= 0.80, m
    assert m.scores["mae"] < 31_000 and m.ci[0] < m.scores["mae"] < m.ci[1]
    assert 0.8 < m.scores["interval_coverage"] < 0.97
    assert 3800 < m.n_test < 4500  # ~20% of 20,640 rows by hash
    others = {v.family: v.metrics.scores for v in ws.registry.versions("house")}
    assert others["mean"]["r2"] == pytest.approx(0.0, abs=0.01) and others["ridge"]["r2"] < m.scores["r2"]

    # the same rows in another order, as a new drop: the production family retrained on them changes nothing
    fleet = yaml.safe_load(ws.fleet_path.read_text(encoding="utf-8"))
    fleet["models"]["house"]["families"] = [production.family]
    ws.fleet_path.write_text(yaml.safe_dump(fleet), encoding="utf-8")
    ws.reload()
    shuffled = housing.sample(frac=1.0, random_state=3)
    ingest_file(ws, "house", write_rows(tmp_path / "shuffled.csv", shuffled.iloc[:20000]), split="train")
    [again] = train_models(ws)
    assert again.decision is not None and not again.decision.promote, again.decision
    assert again.candidates[0].version is not None and not again.candidates[0].reused
    assert ws.registry.alias("house", PRODUCTION) == production.number
    assert ws.registry.events("house")[-1].kind == "rejected"


def test_served_regressor_answers_values_with_intervals_and_422_for_bad_rows(
    make_workspace, housing: pd.DataFrame, tmp_path: Path
) -> None:
    ws = make_workspace({"house": house_model(families=["mean", "gbm"])}, n_jobs=1, server={"poll_interval_s": 0.2})
    ingest_file(ws, "house", write_rows(tmp_path / "housing.csv", housing.head(3000)))
    [report] = train_models(ws)
    assert report.decision is not None and report.decision.promote, report.decision
    row = {
        "longitude": -122.23,
        "latitude": 37.88,
        "housing_median_age": 41,
        "total_rooms": 880,
        "total_bedrooms": None,
        "population": 322,
        "households": 126,
        "median_income": 8.3252,
        "ocean_proximity": "NEAR BAY",
    }
    with running(ws) as url:
        endpoint = f"{url}/v1/models/house/predict"
        answer = httpx.post(endpoint, json={"inputs": [row, {**row, "median_income": 1.5}]})
        assert answer.status_code == 200, answer.text
        first, second = answer.json()["predictions"]
        assert first["lower"] < first["value"] < first["upper"] and first["level"] == 0.9
        assert first["value"] > second["value"] > 0  # a richer district is dearer

        bad = {
            "missing": {"inputs": [{k: v for k, v in row.items() if k != "median_income"}]},
            "unknown": {"inputs": [{**row, "pool": 1}]},
            "wrong type": {"inputs": [{**row, "median_income": "high"}]},
            "number as category": {"inputs": [{**row, "ocean_proximity": 3}]},
            "not a row": {"inputs": ["a text"]},
            "empty": {"inputs": []},
            "no inputs": {"rows": [row]},
        }
        for case, body in bad.items():
            response = httpx.post(endpoint, json=body)
            assert response.status_code == 422, (case, response.text)
            assert response.json()["error"]["code"] == "invalid_request"
        message = httpx.post(endpoint, json=bad["wrong type"]).json()["error"]["message"]
        assert "inputs[0].median_income: expected a number" in message
        assert (
            httpx.post(endpoint, content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
        )

        # new rows over HTTP go through the same validation as a file drop
        data = f"{url}/v1/models/house/data"
        refused = httpx.post(
            data, json={"rows": [{**row, TARGET: 452600}, {**row, "median_income": "rich", TARGET: 1}]}
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["problems"][0] == {
            "row": 2,
            "reason": "column 'median_income': 'rich' is not a number",
        }
        stored = httpx.post(data, json={"rows": [{**row, TARGET: 452600}], "split": "train"})
        assert stored.status_code == 200 and stored.json()["n_rows"] == 1, stored.text

        # feedback corrects a label: a regression model's answers have none
        request_id = answer.headers["x-request-id"]
        feedback = httpx.post(f"{url}/v1/models/house/feedback", json={"request_id": request_id, "label": "1"})
        assert feedback.status_code == 422, feedback.text
        assert feedback.json()["error"]["problems"][0]["reason"] == "a regression model takes no label feedback"


def test_shoal_add_takes_a_target_and_fills_the_task_defaults(make_workspace) -> None:
    ws = make_workspace({})
    result = CliRunner().invoke(app, ["add", "house", "--task", "regression", "--target", TARGET, "-w", str(ws.root)])
    assert result.exit_code == 0, result.output
    spec = ws.reload().model("house")
    assert spec.target_column == TARGET and spec.metric == "mae"
    assert spec.families == ["mean", "ridge", "extra-trees", "gbm-tuned"]
    missing = CliRunner().invoke(app, ["add", "other", "--task", "regression", "-w", str(ws.root)])
    assert missing.exit_code != 0 and "target_column" in str(missing.exception)
