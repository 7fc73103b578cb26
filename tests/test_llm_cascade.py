"""A cascade whose fallback is an LLM endpoint: the fleet file's `llm:` section and its checks, and the served
cascade — with llama.cpp's server and SmolLM2 behind `shoal serve` (a real process), and with the scripted server
for the answers a real model cannot be made to give (labels outside the set, a spent cap, a server that is down)."""

from __future__ import annotations

import math
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from conftest import read_csv
from local_llm import local_llm
from processes import free_port, shoal_serve
from scripted_llm import Script, scripted_llm
from serve_fixtures import SPAM_ROWS, Trained, running
from shoal.cascade.calibration import confidence
from shoal.cascade.combiner import load_route
from shoal.cascade.evaluation import cascade_report
from shoal.fleet import FleetError, parse_fleet
from shoal.llm.prompt import DEFAULT_PROMPT
from shoal.registry import PRODUCTION
from shoal.workspace import Workspace

LLM_CASCADE = {"fallback": {"llm": "local"}, "max_deferral": 0.3}


LOCAL = {"local": {"base_url": "http://h/v1", "model": "m"}}


def _fleet(cascade: dict[str, Any], llm: dict[str, Any]) -> dict[str, Any]:
    model = {"task": "text-classification", "families": ["tfidf-logreg"], "cascade": cascade}
    return {"models": {"small": model}, "llm": llm}


@pytest.mark.parametrize(
    ("cascade", "llm", "expected"),
    [
        ({"fallback": 3, "max_deferral": 0.2}, LOCAL, "models.small.cascade.fallback: give a model of the fleet or"),
        ({"fallback": {"llm": "nope"}, "max_deferral": 0.2}, LOCAL, "models.small.cascade.fallback.llm: no endpoint "),
        (
            {"fallback": {"prompt": "x"}, "max_deferral": 0.2},
            LOCAL,
            "models.small.cascade.fallback.llm: Field required",
        ),
        ({"fallback": {"llm": "local", "seed": 1}, "max_deferral": 0.2}, LOCAL, "cascade.fallback.seed: unknown key"),
        ({"fallback": {"llm": "local"}, "max_deferral": 0.2, "gate": True}, LOCAL, "gate: true needs a fallback model"),
        (LLM_CASCADE, {"local": {"base_url": "127.0.0.1:8080", "model": "m"}}, "llm.local.base_url: must be an http"),
        (LLM_CASCADE, {"local": {"base_url": "http://h/v1"}}, "llm.local.model: Field required"),
        (
            LLM_CASCADE,
            {"local": {"base_url": "http://h/v1", "model": "m", "api_key_env": "sk-abc123"}},
            "llm.local.api_key_env: must be the name of an environment variable",
        ),
        (LLM_CASCADE, {"local": {"base_url": "http://h/v1", "model": "m", "price_in": -1}}, "llm.local.price_in"),
        (LLM_CASCADE, {"local": {"base_url": "http://h/v1", "model": "m", "output": "xml"}}, "llm.local.output"),
    ],
)
def test_bad_llm_settings_name_the_key_path(cascade: dict[str, Any], llm: dict[str, Any], expected: str) -> None:
    with pytest.raises(FleetError, match=r"shoal\.yaml") as raised:
        parse_fleet(_fleet(cascade, llm), Path("shoal.yaml"))
    assert expected in str(raised.value)


def test_a_valid_llm_section_is_read() -> None:
    llm = {"local": {"base_url": "http://127.0.0.1:8080/v1/", "model": "m", "api_key_env": "KEY", "price_out": 0.6}}
    fleet = parse_fleet(
        _fleet({"fallback": {"llm": "local", "prompt": "Pick: {labels}"}, "max_deferral": 0.2}, llm), Path("x")
    )
    cascade = fleet.models["small"].cascade  # type: ignore[attr-defined]
    assert (cascade.fallback_model, cascade.fallback_name, cascade.fallback_llm.prompt) == (
        None,
        "llm:local",
        "Pick: {labels}",
    )
    endpoint = fleet.llm["local"]
    assert endpoint.base_url == "http://127.0.0.1:8080/v1" and endpoint.output == "auto"
    assert endpoint.cost(1_000_000, 1_000_000) == pytest.approx(0.6)


def _with_llm(trained: Trained, folder: Path, llm: dict[str, Any], **cascade: Any) -> Workspace:
    """A copy of the trained spam workspace whose model cascades to the LLM endpoint `local` (`cascade`: more of
    the model's cascade settings)."""
    root = folder / "ws"
    shutil.copytree(trained.root, root)
    path = root / "shoal.yaml"
    fleet = yaml.safe_load(path.read_text(encoding="utf-8"))
    fleet["models"]["spam"]["cascade"] = LLM_CASCADE | cascade
    fleet["llm"] = {"local": llm}
    path.write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    return Workspace(root)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    unseen = read_csv("sms_spam/sms_spam.csv")["text"].iloc[SPAM_ROWS:]
    return list(dict.fromkeys(unseen))[:60]  # each text once: the client asks a repeated text once


def _unsure(ws: Workspace, texts: list[str]) -> tuple[list[str], np.ndarray]:
    """The small production version's own labels of `texts` and which are below its threshold."""
    version = ws.registry.version("spam", ws.registry.alias("spam", PRODUCTION))
    predictor = ws.load_predictor(version)
    route = load_route(ws.registry.artifacts.path(version.artifact_uri), ws.model("spam").cascade)  # type: ignore[attr-defined]
    assert route is not None
    proba = predictor.predict_proba(texts)
    return [predictor.labels[i] for i in proba.argmax(axis=1)], confidence(proba, route.temperature) < route.threshold


def _predict(url: str, texts: list[str]) -> list[dict[str, Any]]:
    response = httpx.post(f"{url}/v1/models/spam/predict", json={"inputs": texts}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]  # type: ignore[no-any-return]


def _metric(url: str, line: str) -> float:
    found = re.search(rf"^{re.escape(line)} (\S+)$", httpx.get(f"{url}/metrics").text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def test_shoal_serve_answers_unsure_inputs_with_a_real_local_llm(
    trained: Trained, tmp_path: Path, texts: list[str]
) -> None:
    with local_llm(tmp_path) as api:
        llm = {"base_url": api, "model": "smollm2", "price_in": 0.1, "price_out": 0.2, "timeout_s": 120}
        ws = _with_llm(trained, tmp_path, llm, fallback_timeout_s=120)  # SmolLM2 takes seconds a text under load
        _, unsure = _unsure(ws, texts)
        # four unsure texts among sure ones: SmolLM2 takes a fraction of a second per text, more on a busy machine
        sure = [t for t, u in zip(texts, unsure, strict=True) if not u]
        texts = [t for t, u in zip(texts, unsure, strict=True) if u][:4] + sure[:8]
        own, unsure = _unsure(ws, texts)
        assert unsure.tolist() == [True] * 4 + [False] * 8
        deferred = int(unsure.sum())
        ws.close()
        with shoal_serve(ws.root, ready_within=60) as (url, _):
            answers = _predict(url, texts)
            assert [a["tier"] for a in answers] == ["fallback" if u else "small" for u in unsure]
            for answer, label, u in zip(answers, own, unsure, strict=True):
                if u:
                    assert answer["label"] in ("ham", "spam") and answer["probability"] == 1.0
                    assert (answer["fallback_model"], answer["fallback_version"]) == ("llm:local", "smollm2")
                else:
                    assert answer["label"] == label
            assert _metric(url, 'shoal_llm_requests_total{endpoint="local",outcome="ok"}') == deferred
            assert _metric(url, 'shoal_llm_tokens_total{endpoint="local",kind="prompt"}') > 0
            assert _metric(url, 'shoal_llm_cost_dollars_total{endpoint="local"}') > 0
            assert _metric(url, 'shoal_cascade_fallback_cost_dollars_total{model="spam"}') > 0
            assert _predict(url, texts) == answers  # the second time from the registry's cache
            assert _metric(url, 'shoal_llm_requests_total{endpoint="local",outcome="cached"}') == deferred


@pytest.fixture
def script() -> Iterator[Script]:
    with scripted_llm() as script:
        yield script


@pytest.mark.parametrize("how", ["invalid", "down", "capped"])
def test_unanswered_inputs_keep_the_small_answer_marked(
    trained: Trained, tmp_path: Path, texts: list[str], script: Script, how: str
) -> None:
    llm: dict[str, Any] = {"base_url": script.url, "model": "scripted", "retries": 0}
    if how == "invalid":
        script.plan.extend([("content", '{"label": "eggs"}')] * len(texts))
    elif how == "down":
        llm["base_url"] = f"http://127.0.0.1:{free_port()}/v1"
    else:  # $0.001 a request: two are answered, then the day's cap is spent
        llm.update(price_in=1.0, max_cost_per_day=0.0015, max_concurrency=1)
    ws = _with_llm(trained, tmp_path, llm)
    own, unsure = _unsure(ws, texts)
    deferred = int(unsure.sum())
    with running(ws) as url:
        answers = _predict(url, texts)
        tiers = [a["tier"] for a in answers]
        outcome = {"invalid": "invalid", "down": "error", "capped": "capped"}[how]
        count = _metric(url, f'shoal_llm_requests_total{{endpoint="local",outcome="{outcome}"}}')
    if how == "capped":
        assert tiers.count("fallback") == 2 and tiers.count("small-capped") == deferred - 2 == count
        assert [a["label"] for a in answers if a["tier"] != "fallback"] == [
            label for label, a in zip(own, answers, strict=True) if a["tier"] != "fallback"
        ]
    else:
        assert tiers == ["small-fallback-down" if u else "small" for u in unsure]
        assert [a["label"] for a in answers] == own and count == deferred


def test_the_cascade_budget_holds_from_its_first_deferral(
    trained: Trained, tmp_path: Path, texts: list[str], script: Script
) -> None:
    """Before the endpoint has answered anything its cost is estimated (the instruction, a typical text and answer),
    never taken as free: a day's budget of 2.5 such requests lets the first request send 2 of its unsure texts."""
    llm = {"base_url": script.url, "model": "scripted", "price_in": 1.0}
    prior = (math.ceil(len(DEFAULT_PROMPT) / 4) + 64) / 1e6
    ws = _with_llm(trained, tmp_path, llm, max_fallback_cost_per_day=2.5 * prior)
    _, unsure = _unsure(ws, texts)
    assert unsure.sum() > 2
    with running(ws) as url:
        tiers = [a["tier"] for a in _predict(url, texts)]
    assert tiers.count("fallback") == 2 and tiers.count("small-capped") == unsure.sum() - 2
    assert len(script.requests) == 2


def test_eval_says_an_llm_fallback_is_not_judged(trained: Trained, tmp_path: Path) -> None:
    ws = _with_llm(trained, tmp_path, {"base_url": "http://127.0.0.1:9/v1", "model": "m"})
    assert cascade_report(ws, "spam") == {
        "model": "spam",
        "fallback": "llm:local",
        "target": {
            "fallback": {"llm": "local"},
            "max_deferral": 0.3,
            "fallback_timeout_s": 5.0,
            "fallback_cooldown_s": 5.0,
            "gate": False,
        },
        "problem": "the fallback is the LLM endpoint 'local': not judged on the test set",
    }
    ws.close()


def test_a_hanging_llm_holds_a_request_no_longer_than_the_fallback_timeout(
    trained: Trained, tmp_path: Path, texts: list[str], script: Script
) -> None:
    """An endpoint that stops answering: the request gets the small model's answers (small-fallback-down) once
    fallback_timeout_s passes, and the next requests within fallback_cooldown_s do not ask it at all."""
    script.plan.extend([("hang",)] * 200)
    ws = _with_llm(trained, tmp_path, {"base_url": script.url, "model": "scripted", "timeout_s": 60, "retries": 0})
    fleet = yaml.safe_load(ws.fleet_path.read_text(encoding="utf-8"))
    fleet["models"]["spam"]["cascade"].update(fallback_timeout_s=1, fallback_cooldown_s=60)
    ws.fleet_path.write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    ws.reload()
    own, unsure = _unsure(ws, texts)
    with running(ws) as url:
        started = time.monotonic()
        answers = _predict(url, texts)
        waited = time.monotonic() - started
        asked = len(script.requests)
        again = _predict(url, texts)
        assert len(script.requests) == asked  # resting: not asked again
    assert waited < 10, f"the request waited {waited:.1f} s on a hanging endpoint"
    for found in (answers, again):
        assert [a["tier"] for a in found] == ["small-fallback-down" if u else "small" for u in unsure]
        assert [a["label"] for a in found] == own
