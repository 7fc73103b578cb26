"""A cascade served by a real server on 127.0.0.1: two real small models trained on a Banking77 subset, the
small one (tfidf-logreg) deferring its unsure inputs to the other (tfidf-svm) per input."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import FAST_WORKSPACE, read_csv
from serve_fixtures import running
from shoal.cascade.calibration import CALIBRATION_FILE
from shoal.cascade.combiner import Caps, load_route
from shoal.cascade.evaluation import cascade_report, current_test_set
from shoal.cascade.spec import CascadeSpec
from shoal.cli import app
from shoal.data.ingest import ingest_file
from shoal.gate import Decision, _cascade_rule
from shoal.registry import PRODUCTION
from shoal.tasks import get_task
from shoal.train.trainer import train_models
from shoal.workspace import REGISTRY_ENV, Workspace

LABELS = 12  # the first labels of Banking77 (about 130 training rows each)
CASCADE = {"fallback": "big", "max_deferral": 0.3}


def _model(family: str, **extra: Any) -> dict[str, Any]:
    return {
        "task": "text-classification",
        "metric": "accuracy",
        "families": [family],
        "cv_folds": 2,
        "serve": {"max_batch_size": 64, "max_inputs": 64},
        **extra,
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with `small` (tfidf-logreg, cascading to `big`) and `big` (tfidf-svm) in production."""
    root = tmp_path_factory.mktemp("cascade") / "trained"
    root.mkdir()
    fleet = {
        "workspace": {**FAST_WORKSPACE, "n_jobs": 1, "server": {"poll_interval_s": 0.2}},
        "models": {"small": _model("tfidf-logreg", cascade=CASCADE), "big": _model("tfidf-svm")},
    }
    (root / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    data = root / "banking.csv"
    _subset(read_csv("banking77/train.csv")).to_csv(data, index=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(REGISTRY_ENV, raising=False)
        ws = Workspace(root)
        for name in ("small", "big"):
            ingest_file(ws, name, data)
        for report in train_models(ws, ["small", "big"]):
            assert report.error is None, report.error
        assert ws.registry.alias("small", PRODUCTION) and ws.registry.alias("big", PRODUCTION)
        ws.close()
    return root


def _subset(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["label"].isin(sorted(frame["label"].unique())[:LABELS])]


def _copy(trained: Path, folder: Path, cascade: dict[str, Any] | None = None, **models: Any) -> Workspace:
    root = folder / "ws"
    shutil.copytree(trained, root)
    path = root / "shoal.yaml"
    fleet = yaml.safe_load(path.read_text(encoding="utf-8"))
    fleet["models"]["small"]["cascade"] = {**CASCADE, **(cascade or {})}
    fleet["models"].update(models)
    path.write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    return Workspace(root)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return _subset(read_csv("banking77/test.csv"))["text"].iloc[:40].tolist()


def _predict(url: str, model: str, texts: list[str]) -> list[dict[str, Any]]:
    response = httpx.post(f"{url}/v1/models/{model}/predict", json={"inputs": texts}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]  # type: ignore[no-any-return]


def _metric(url: str, line: str) -> float:
    """The value of one /metrics line (its name and labels), 0 when absent."""
    text = httpx.get(f"{url}/metrics").text
    found = re.search(rf"^{re.escape(line)} (\S+)$", text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def _small_view(ws: Workspace, texts: list[str]) -> tuple[list[str], np.ndarray]:
    """The small production version's own labels of `texts` and which of them are below its threshold."""
    version = ws.registry.version("small", ws.registry.alias("small", PRODUCTION))
    predictor = ws.load_predictor(version)
    route = load_route(ws.registry.artifacts.path(version.artifact_uri), CascadeSpec(**CASCADE))
    assert route is not None
    proba = predictor.predict_proba(texts)
    scaled = np.exp(np.log(np.clip(proba, 1e-12, None)) / route.temperature)
    conf = (scaled / scaled.sum(axis=1, keepdims=True)).max(axis=1)
    return [predictor.labels[i] for i in proba.argmax(axis=1)], conf < route.threshold


def test_training_stores_a_calibration_with_each_version(trained: Path) -> None:
    ws = Workspace(trained)
    try:
        for name in ("small", "big"):
            version = ws.registry.version(name, ws.registry.alias(name, PRODUCTION))
            assert (ws.registry.artifacts.path(version.artifact_uri) / CALIBRATION_FILE).is_file()
    finally:
        ws.close()


def test_eval_and_the_report_show_the_coverage_accuracy_curve(trained: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "small", "--json", "-w", str(trained)])
    assert result.exit_code == 0, result.output
    cascade = json.loads(result.output)["cascade"]
    curve = {p["deferred"]: p["accuracy"] for p in cascade["curve"]}
    assert list(curve) == [0.0, 0.1, 0.2, 0.3, 0.5, 1.0]
    assert curve[0.0] == pytest.approx(cascade["small_accuracy"])
    assert curve[1.0] == pytest.approx(cascade["fallback_accuracy"])
    # max_deferral 0.3, chosen on out-of-fold rows: the final fit (on every training row) is surer than the fold fits
    assert 0.05 < cascade["chosen"]["deferred"] <= 0.35
    costs = cascade["cost_per_million"]
    assert costs["small"] < cascade["chosen"]["cost_per_million"] < costs["small"] + costs["fallback"]
    table = CliRunner().invoke(app, ["eval", "small", "-w", str(trained)], terminal_width=200)
    assert "cascade small -> big" in table.output and "(chosen)" in table.output
    assert "cascade" not in json.loads(CliRunner().invoke(app, ["eval", "big", "--json", "-w", str(trained)]).output)
    result = CliRunner().invoke(app, ["report", "small", "--out", str(tmp_path / "r"), "-w", str(trained)])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r" / "small.html").read_text(encoding="utf-8")
    assert '<table id="cascade">' in page and "(chosen threshold)" in page


def test_the_gate_judges_the_cascade_when_the_fleet_asks(trained: Path, tmp_path: Path) -> None:
    ws = _copy(trained, tmp_path, {"gate": True})
    spec = ws.model("small")
    version = ws.registry.version("small", ws.registry.alias("small", PRODUCTION))
    test = current_test_set(ws, "small")
    assert test is not None
    promoted = Decision(True, "promoted: significantly better", "accuracy", 0.1, [0.05, 0.15], 0.001, "mcnemar")
    judged = _cascade_rule(ws, spec, get_task(spec.task), test, version, version, promoted)
    assert judged.promote and judged.reason.endswith("; the cascade with big: accuracy Δ +0.0000, p=1 for a drop")
    spec.cascade.gate = False  # type: ignore[attr-defined]
    assert _cascade_rule(ws, spec, get_task(spec.task), test, version, version, promoted) == promoted
    ws.close()


def test_only_the_unsure_inputs_of_a_batch_reach_the_fallback_batched(
    trained: Path, tmp_path: Path, texts: list[str]
) -> None:
    ws = _copy(trained, tmp_path)
    own, unsure = _small_view(ws, texts)
    assert 0 < unsure.sum() < len(texts)  # a batch with sure and unsure inputs
    with running(ws) as url:
        answers = _predict(url, "small", texts)
        direct = _predict(url, "big", [t for t, u in zip(texts, unsure, strict=True) if u])
        tiers = [a["tier"] for a in answers]
        assert tiers == ["fallback" if u else "small" for u in unsure]
        assert [a["label"] for a, u in zip(answers, unsure, strict=True) if not u] == [
            label for label, u in zip(own, unsure, strict=True) if not u
        ]
        assert [a["label"] for a in answers if a["tier"] == "fallback"] == [a["label"] for a in direct]
        big = ws.registry.alias("big", PRODUCTION)
        assert {(a["fallback_model"], a["fallback_version"]) for a in answers if a["tier"] == "fallback"} == {
            ("big", big)
        }
        # the deferred inputs went to big's batcher as one batch (then the direct call made a second one)
        assert _metric(url, f'shoal_batch_size_count{{model="big",version="{big}"}}') == 2
        assert _metric(url, f'shoal_inputs_total{{model="big",version="{big}"}}') == 2 * unsure.sum()
        assert _metric(url, 'shoal_cascade_inputs_total{model="small",tier="fallback"}') == unsure.sum()
        assert _metric(url, 'shoal_cascade_inputs_total{model="small",tier="small"}') == len(texts) - unsure.sum()
        assert _metric(url, 'shoal_cascade_tier_duration_seconds_count{model="small",tier="fallback"}') == 1
        assert _metric(url, 'shoal_cascade_fallback_cost_dollars_total{model="small"}') > 0


def test_the_deferred_inputs_of_concurrent_requests_batch_together_at_the_fallback(
    trained: Path, tmp_path: Path, texts: list[str]
) -> None:
    ws = _copy(trained, tmp_path)
    _, unsure = _small_view(ws, texts)
    requests = [[text] for text, u in zip(texts, unsure, strict=True) if u]  # one unsure input per request
    assert len(requests) >= 4

    async def send_all(url: str) -> list[list[dict[str, Any]]]:
        async with httpx.AsyncClient(timeout=30) as client:
            sent = [client.post(f"{url}/v1/models/small/predict", json={"inputs": body}) for body in requests]
            return [r.json()["predictions"] for r in await asyncio.gather(*sent)]

    with running(ws) as url:
        answers = asyncio.run(send_all(url))
        big = ws.registry.alias("big", PRODUCTION)
        batches = _metric(url, f'shoal_batch_size_count{{model="big",version="{big}"}}')
    assert [a["tier"] for [a] in answers] == ["fallback"] * len(requests)
    assert 1 <= batches < len(requests)


def test_past_the_rate_cap_the_small_model_answers_and_says_so(trained: Path, tmp_path: Path, texts: list[str]) -> None:
    ws = _copy(trained, tmp_path, {"max_fallback_per_second": 2})
    _, unsure = _small_view(ws, texts)
    assert unsure.sum() > 2
    with running(ws) as url:
        tiers = [a["tier"] for a in _predict(url, "small", texts)]
    assert tiers.count("fallback") == 2
    assert tiers.count("small-capped") == unsure.sum() - 2
    assert [t == "small" for t in tiers] == (~unsure).tolist()


@pytest.mark.parametrize("how", ["not_served", "overloaded"])
def test_a_fallback_that_does_not_answer_leaves_the_small_answer_marked(
    trained: Path, tmp_path: Path, texts: list[str], how: str
) -> None:
    if how == "not_served":  # a fallback declared in the fleet but never trained
        ws = _copy(trained, tmp_path, {"fallback": "bigger"}, bigger=_model("tfidf-svm"))
    else:  # the fallback's queue takes one input: the deferred ones are refused with 503 there
        ws = _copy(trained, tmp_path, big=_model("tfidf-svm", serve={"max_queue": 1, "max_inputs": 1}))
    own, unsure = _small_view(ws, texts)
    if how == "not_served":  # nor can `shoal eval` judge the cascade
        assert cascade_report(ws, "small") == {
            "model": "small",
            "fallback": "bigger",
            "target": {
                "fallback": "bigger",
                "max_deferral": 0.3,
                "fallback_timeout_s": 5.0,
                "fallback_cooldown_s": 5.0,
                "gate": False,
            },
            "problem": "no production version of the fallback model",
        }
    with running(ws) as url:
        answers = _predict(url, "small", texts)
        assert _metric(url, 'shoal_cascade_inputs_total{model="small",tier="small-fallback-down"}') == unsure.sum()
    assert [a["tier"] for a in answers] == ["small-fallback-down" if u else "small" for u in unsure]
    assert [a["label"] for a in answers] == own


def test_the_spend_cap_counts_per_utc_day_and_gives_back_unanswered_inputs() -> None:
    today = [date(2026, 1, 1)]
    caps = Caps(CascadeSpec(fallback="b", max_deferral=0.2, max_fallback_cost_per_day=1.0), today=lambda: today[0])
    assert caps.reserve(3, 0.3) == 3  # $0.90 of $1
    assert caps.reserve(3, 0.3) == 0
    caps.release(2, 0.3)  # two were not answered
    assert caps.reserve(5, 0.3) == 2
    assert caps.reserve(5, 0.0) == 5  # a free fallback is never capped by spend
    today[0] = date(2026, 1, 2)
    assert caps.reserve(5, 0.3) == 3


def test_the_rate_cap_refills_with_time() -> None:
    now = [0.0]
    caps = Caps(CascadeSpec(fallback="b", max_deferral=0.2, max_fallback_per_second=10), clock=lambda: now[0])
    assert caps.reserve(25, 0.0) == 10
    assert caps.reserve(5, 0.0) == 0
    now[0] = 0.35
    assert caps.reserve(5, 0.0) == 3
    now[0] = 100.0
    assert caps.reserve(50, 0.0) == 10  # the bucket holds one second of inputs


def test_a_rate_cap_below_one_per_second_still_sends_one_input_now_and_then() -> None:
    now = [0.0]
    caps = Caps(CascadeSpec(fallback="b", max_deferral=0.2, max_fallback_per_second=0.5), clock=lambda: now[0])
    assert caps.reserve(3, 0.0) == 1
    assert caps.reserve(3, 0.0) == 0
    now[0] = 2.0  # half an input a second: one more after two seconds
    assert caps.reserve(3, 0.0) == 1


def test_a_pipeline_step_answers_through_its_models_cascade(trained: Path, tmp_path: Path, texts: list[str]) -> None:
    ws = _copy(trained, tmp_path)
    path = ws.root / "shoal.yaml"
    fleet = yaml.safe_load(path.read_text(encoding="utf-8"))
    fleet["pipelines"] = {"one": {"steps": [{"model": "small"}]}}
    path.write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    ws.close()
    ws = Workspace(ws.root)
    _, unsure = _small_view(ws, texts)
    with running(ws) as url:
        response = httpx.post(f"{url}/v1/pipelines/one/predict", json={"inputs": texts}, timeout=30)
        assert response.status_code == 200, response.text
        steps = [result["steps"]["small"] for result in response.json()["results"]]
        assert [step["tier"] for step in steps] == ["fallback" if u else "small" for u in unsure]
        assert _metric(url, 'shoal_cascade_inputs_total{model="small",tier="fallback"}') == unsure.sum()
