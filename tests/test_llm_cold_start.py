"""Cold start: a model with no labelled data answered by an LLM endpoint through `shoal serve`'s batcher, its answers
and feedback turned into training data by the worker, a small version promoted by the gate against the LLM, and the
LLM demoted to that version's cascade fallback. The scripted OpenAI-compatible server answers for the logic (a
controlled error rate, a spent cap, an outage, a hang); llama.cpp's server with SmolLM2 for one run end to end."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from html import escape
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import FAST_WORKSPACE, write_rows
from local_llm import local_llm
from processes import free_port, shoal_serve
from scripted_llm import PROMPT_TOKENS, Script, scripted_llm
from serve_fixtures import running, wait_until
from shoal import coldstart
from shoal.cli import app
from shoal.data.assembled import assembled
from shoal.data.ingest import ingest_file, ingest_frame
from shoal.data.readers import LINE
from shoal.llm.answerer import LLM_FAMILY
from shoal.registry import PRODUCTION, prediction_log
from shoal.report.data import model_report
from shoal.report.html import model_page
from shoal.serve.errors import ServeError
from shoal.serve.metrics import Metrics
from shoal.serve.pool import ModelPool
from shoal.tasks.text_classification import normalize
from shoal.train.trainer import train_models
from shoal.worker.runner import Worker
from shoal.workspace import REGISTRY_ENV, Workspace

LABELS = ["ham", "spam"]


def cold_fleet(root: Path, endpoint: dict[str, Any], **model: Any) -> Workspace:
    """A workspace whose model `spam` (its keys updated by `model`) starts cold on the endpoint `local` (`endpoint`:
    its settings)."""
    root.mkdir(parents=True, exist_ok=True)
    spec = {
        "task": "text-classification",
        "labels": LABELS,
        "metric": "accuracy",
        "families": ["tfidf-logreg"],
        "llm": {"endpoint": "local", "min_rows": 200},
        "retrain": {"min_new_rows": 1, "debounce_seconds": 0},
        "serve": {"max_batch_size": 16},
        **model,
    }
    fleet = {
        "workspace": {**FAST_WORKSPACE, "n_jobs": 1, "server": {"poll_interval_s": 0.2}},
        "models": {"spam": spec},
        "llm": {"local": {"retries": 0, **endpoint}},
    }
    (root / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    return Workspace(root)


@pytest.fixture(autouse=True)
def _own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REGISTRY_ENV, raising=False)


@pytest.fixture
def script() -> Iterator[Script]:
    with scripted_llm() as script:
        yield script


@pytest.fixture(scope="module")
def texts(sms: pd.DataFrame) -> pd.DataFrame:
    """SMS texts, each once, with their (human) labels."""
    return sms.drop_duplicates("text").reset_index(drop=True)


def llm_right_but(gold: dict[str, str], every: int) -> Callable[[str], str]:
    """The scripted LLM's labels: the human label, except for every `every`-th text (the other label)."""
    wrong = set(list(gold)[::every])
    return lambda text: {"ham": "spam", "spam": "ham"}[gold[text]] if text in wrong else gold.get(text, "ham")


def predict(url: str, texts: list[str]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(f"{url}/v1/models/spam/predict", json={"inputs": texts}, timeout=300)
    return response, time.monotonic() - started


def answered(url: str, texts: list[str], size: int = 10) -> list[tuple[str, int, dict[str, Any]]]:
    """Each text's (request id, index, answer), asked `size` texts per request."""
    found = []
    for start in range(0, len(texts), size):
        response, _ = predict(url, texts[start : start + size])
        assert response.status_code == 200, response.text
        body = response.json()
        found += [(body["request_id"], i, answer) for i, answer in enumerate(body["predictions"])]
    return found


def test_a_cold_start_is_answered_by_the_llm_then_a_small_version_demotes_it_to_the_fallback(
    tmp_path: Path, script: Script, texts: pd.DataFrame
) -> None:
    served, held_out, unseen = texts.iloc[:300], texts.iloc[300:700], texts.iloc[700:1000]
    gold = dict(zip(texts["text"], texts["label"], strict=True))
    script.label = llm_right_but(gold, every=5)  # the LLM is right 4 times in 5
    ws = cold_fleet(
        tmp_path / "ws",
        {"base_url": script.url, "model": "scripted", "price_in": 1.0},
        gate={"non_inferiority_margin": 0.05},
    )
    # the worker starts the model on its LLM; with no labelled row, nothing trains
    assert Worker(Workspace(ws.root), worker_id="w1").run(once=True) == 0
    first = ws.registry.version("spam", ws.registry.alias("spam", PRODUCTION))
    assert first.family == LLM_FAMILY
    # a human-labelled test set: the gate judges the small candidates against the LLM on it
    ingest_file(ws, "spam", write_rows(tmp_path / "gold.csv", held_out), split="test")
    with running(ws) as url:
        before = answered(url, served["text"].tolist())
        assert {answer["tier"] for _, _, answer in before} == {"llm"}
        assert [answer["label"] for _, _, answer in before] == [script.label(t) for t in served["text"]]
        calls_before = len(script.requests)
        assert calls_before == len(served)  # one call per text: each text is new
        listed = httpx.get(f"{url}/v1/models", timeout=60).json()["models"][0]["llm"]
        assert (listed["role"], listed["calls"], listed["cost_per_million"]) == ("answerer", 300, PROMPT_TOKENS)
        # a person labels half of the texts
        for (request_id, index, _), text in list(zip(before, served["text"], strict=True))[::2]:
            sent = {"request_id": request_id, "index": index, "label": gold[text]}
            assert httpx.post(f"{url}/v1/models/spam/feedback", json=sent, timeout=60).status_code == 200

        # the feedback and the LLM's other answers become data, a small version is trained and beats the LLM
        assert Worker(Workspace(ws.root), worker_id="w2").run(once=True) == 1
        sources = [drop.source for drop in ws.registry.drops("spam")]
        assert sources[0] == "gold.csv" and sources[1].startswith("feedback (150 label(s)")
        # the LLM's answers to the other half: each text once, none already in the data
        labelled = {normalize(t) for t in [*served["text"].iloc[::2], *held_out["text"]]}
        expected = len({normalize(t) for t in served["text"].iloc[1::2]} - labelled)
        assert sources[2] == f"llm-answers of v1 (local, scripted): {expected} answer(s)"
        provenance = ws.registry.drops("spam")[2].provenance
        assert provenance is not None and (provenance["kind"], provenance["teacher"]) == ("llm-answers", "llm:local")
        production = ws.registry.version("spam", ws.registry.alias("spam", PRODUCTION))
        assert production.family == "tfidf-logreg"
        history = ws.registry.alias_history("spam")
        assert [(h.actor, h.to_version) for h in history] == [("cold-start", 1), ("gate", production.number)]
        assert "is now v" in history[-1].reason and "cascade fallback" in history[-1].reason, history[-1].reason

        def demoted() -> bool:
            model = httpx.get(f"{url}/v1/models", timeout=60).json()["models"][0]
            return model["serving_version"] == production.number and (model["llm"] or {}).get("role") == "fallback"

        wait_until(demoted, "the server serving the small version with the LLM as its fallback", timeout=60)
        asked = len(script.requests)
        after = answered(url, unseen["text"].tolist())  # texts the LLM was never asked (the gate asked the gold ones)
        tiers = [answer["tier"] for _, _, answer in after]
        calls_after = len(script.requests) - asked
        assert set(tiers) <= {"small", "fallback"} and "small" in tiers and "fallback" in tiers
        assert tiers.count("fallback") == calls_after < 0.5 * calls_before, (calls_before, calls_after)
        for _, _, answer in after:
            if answer["tier"] == "fallback":
                assert (answer["fallback_model"], answer["fallback_version"]) == ("llm:local", "scripted")
        tier = httpx.get(f"{url}/v1/models/spam", timeout=60).json()["llm"]
        assert tier["small_cost_per_million"] == production.metrics.profile.cost_per_million
        assert tier["cost_per_million_predictions"] == pytest.approx(
            tier["small_cost_per_million"] + 0.2 * tier["cost_per_million"]
        )
    # `shoal eval` and the report: the LLM tier's $ per million calls beside the small tier's, the share deferred
    # measured on the test set
    evaluated = json.loads(CliRunner().invoke(app, ["eval", "spam", "--json", "-w", str(ws.root)]).output)
    llm = evaluated["llm"]
    assert (llm["role"], llm["cost_per_million"], llm["deferred_measured"]) == ("fallback", PROMPT_TOKENS, True)
    assert llm["cost_per_million_predictions"] == pytest.approx(
        llm["small_cost_per_million"] + llm["deferred"] * PROMPT_TOKENS
    )
    assert "LLM tier: local (scripted)" in model_page(model_report(Workspace(ws.root), "spam"))
    table = CliRunner().invoke(app, ["eval", "spam", "-w", str(ws.root)]).output
    assert "$ per 1M LLM calls" in table and "deferred to the LLM" in table


def test_with_no_human_labelled_test_rows_quality_is_measured_against_the_llm(
    tmp_path: Path, script: Script, texts: pd.DataFrame
) -> None:
    gold = dict(zip(texts["text"], texts["label"], strict=True))
    script.label = llm_right_but(gold, every=10)
    llm = {"base_url": script.url, "model": "scripted", "price_in": 1.0}
    ws = cold_fleet(tmp_path / "ws", llm, llm={"endpoint": "local", "min_rows": 200, "min_agreement": 0.999})
    version = coldstart.start(ws, "spam")
    assert version is not None and coldstart.start(ws, "spam") is None  # once
    assert coldstart.waiting(ws, "spam") == "cold start: 0 of 200 labelled rows (min_rows) while the LLM answers"
    log = ws.prediction_log()
    served = texts["text"].iloc[:250].tolist()
    for start in range(0, len(served), 50):  # as the server logs the LLM's answers
        part = served[start : start + 50]
        log.record(f"r{start}", "spam", version.number, part, [script.label(t) for t in part])
    log.flush()
    drop = coldstart.llm_answers_drop(ws, log, "spam")
    assert drop is not None and drop.drop.n_rows == 250 and coldstart.llm_answers_drop(ws, log, "spam") is None
    assert coldstart.waiting(ws, "spam") is None
    by_llm = "the teacher's labels (the cold start's LLM answers, llm:local)"
    found = assembled(ws, "spam")
    assert found is not None and found.judged_by == by_llm
    # a teacher's labels (shoal label) are no human's either: they do not become the gold test set
    taught = texts.iloc[300:360][["text"]].assign(label="ham", **{LINE: range(2, 62)})
    ingest_frame(ws, "spam", taught, source="teacher", provenance={"kind": "teacher", "teacher": "v1"})
    found = assembled(ws, "spam")
    both = "the teacher's labels (the cold start's LLM answers, llm:local, v1)"
    assert found is not None and found.judged_by == both
    assert set(found.test["text"]) & set(served)  # the LLM's test rows were not moved out for the teacher's
    # the LLM would score ~100% on its own answers: the small version needs min_agreement with it instead
    [report] = train_models(ws, ["spam"])
    decision = report.decision
    assert decision is not None, report.error
    assert (decision.promote, decision.code, decision.metric) == (False, "below_agreement", "agreement")
    assert "judged against the LLM" in decision.reason and "v1 (LLM local)" in decision.reason, decision.reason
    assert f"the test rows being {both}" in decision.reason
    agreed = decision.delta + 0.999
    assert 0.5 < agreed < 0.999  # the student learnt the LLM's labels, short of the (strict) threshold
    spec = yaml.safe_load((ws.root / "shoal.yaml").read_text(encoding="utf-8"))
    spec["models"]["spam"]["llm"]["min_agreement"] = 0.5
    (ws.root / "shoal.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    ws = Workspace(ws.root)
    [report] = train_models(ws, ["spam"])
    assert report.decision is not None and report.decision.code == "agreement", report.decision
    production = ws.registry.version("spam", ws.registry.alias("spam", PRODUCTION))
    assert production.family == "tfidf-logreg"
    assert "promoted: agrees with the LLM at least min_agreement" in ws.registry.alias_history("spam")[-1].reason
    # `shoal eval` and the report say whose labels judged it
    evaluated = json.loads(CliRunner().invoke(app, ["eval", "spam", "--json", "-w", str(ws.root)]).output)
    assert evaluated["test_labels"] == f"no human-labelled test rows: quality is measured against {both}"
    assert escape(f"quality is measured against {both}") in model_page(model_report(ws, "spam"))
    # a human-labelled test row arrives: the test set is the human-labelled rows only, the LLM's join training
    ingest_file(ws, "spam", write_rows(tmp_path / "gold.csv", texts.iloc[400:500]), split="test")
    found = assembled(ws, "spam")
    assert found is not None and found.judged_by is None and len(found.test) == 100
    assert any("labelled by an LLM or a teacher moved to training" in note for note in found.notes)
    log.close()


def test_the_llm_answers_taken_are_exactly_those_logged_after_the_last_drop(
    tmp_path: Path, script: Script, texts: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each drop of LLM answers records the id of the last logged answer it took, and the next one starts after it:
    answers a server wrote to its log late (buffered while the database was away: their time precedes the drop) are
    taken all the same, and none twice."""
    ws = cold_fleet(
        tmp_path / "ws", {"base_url": script.url, "model": "scripted"}, llm={"endpoint": "local", "min_rows": 50}
    )
    version = coldstart.start(ws, "spam")
    assert version is not None
    log = ws.prediction_log()
    first, late = texts["text"].iloc[:60].tolist(), texts["text"].iloc[60:120].tolist()
    log.record("r1", "spam", version.number, first, ["ham"] * len(first))
    log.flush()
    taken = coldstart.llm_answers_drop(ws, log, "spam")
    assert taken is not None and taken.drop.n_rows == 60
    assert taken.drop.provenance is not None and taken.drop.provenance["last_log_id"] > 0
    logged_at = taken.drop.created_at - timedelta(minutes=5)
    monkeypatch.setattr(prediction_log, "now", lambda: logged_at)
    log.record("r2", "spam", version.number, late, ["spam"] * len(late))
    log.flush()
    again = coldstart.llm_answers_drop(ws, log, "spam")
    assert again is not None and again.drop.n_rows == 60
    assert set(ws.registry.load_drops([again.drop])["text"]) == set(late)
    assert coldstart.llm_answers_drop(ws, log, "spam") is None  # nothing new since
    log.close()


def test_a_registry_from_before_llm_answers_had_provenance_reads_them_as_the_llms(
    tmp_path: Path, script: Script, texts: pd.DataFrame
) -> None:
    """A registry written when a cold start's LLM answers were marked by their drop's source only: opened again, each
    such drop has its provenance (once), so it is judged and split as the LLM's, and the next drop of answers (no
    `last_log_id` to start after) reads the whole log but takes only the texts not in the data yet."""
    ws = cold_fleet(
        tmp_path / "ws", {"base_url": script.url, "model": "scripted"}, llm={"endpoint": "local", "min_rows": 50}
    )
    version = coldstart.start(ws, "spam")
    assert version is not None
    old = texts.iloc[:200][["text", "label"]].assign(**{LINE: range(2, 202)})
    source = "llm-answers of v1: endpoint local, model scripted, prompt 0123456789ab, 200 answer(s)"
    ingest_frame(ws, "spam", old, source=source)  # as shoal stored it then: no provenance
    ingest_frame(ws, "spam", old.iloc[:5].assign(**{LINE: range(2, 7)}), source="llm-answers of v1 notes.csv")
    assert [drop.provenance for drop in ws.registry.drops("spam")] == [None, None]
    ws.close()
    for _ in range(2):  # the provenance is written once
        reopened = Workspace(ws.root)
        legacy, human = reopened.registry.drops("spam")
        assert legacy.provenance == {
            "kind": "llm-answers",
            "teacher": "llm:local",
            "endpoint_model": "scripted",
            "prompt_hash": "0123456789ab",
            "version": 1,
            "last_log_id": None,
            "confidence": None,
        }
        assert human.provenance is None  # not a source shoal wrote
        reopened.close()
    reopened = Workspace(ws.root)
    found = assembled(reopened, "spam")
    assert found is not None and found.judged_by is None  # the one human drop's test rows are the test set
    assert any("labelled by an LLM or a teacher moved to training" in note for note in found.notes)
    log = reopened.prediction_log()
    served = texts["text"].iloc[150:300].tolist()  # 50 in the old drop, 100 new
    log.record("r1", "spam", version.number, served, ["ham"] * len(served))
    log.flush()
    taken = coldstart.llm_answers_drop(reopened, log, "spam")
    assert taken is not None and set(reopened.registry.load_drops([taken.drop])["text"]) == set(served[50:])
    log.close()


def test_a_busy_llm_that_answers_slowly_is_not_made_to_rest(tmp_path: Path, script: Script) -> None:
    """A batch the endpoint cannot finish within timeout_s (one request at a time, 0.4 s each): the request gets a
    503, but the endpoint answered some texts, so it is busy, not down — the next request asks it again at once."""
    script.hold, script.hold_s = 2, 0.4  # never 2 in flight (max_concurrency 1): each request waits hold_s
    llm = {"base_url": script.url, "model": "scripted", "max_concurrency": 1, "timeout_s": 30}
    ws = cold_fleet(tmp_path / "ws", llm, llm={"endpoint": "local", "timeout_s": 1.5, "cooldown_s": 60})
    coldstart.start(ws, "spam")
    batch = [f"text number {i}" for i in range(12)]
    with running(ws) as url:
        first, _ = predict(url, batch)
        asked = len(script.requests)
        predict(url, batch)
        asked_again = len(script.requests) - asked
    assert first.status_code == 503 and first.json()["error"]["code"] == "llm_unavailable", first.text
    assert 0 < asked < len(batch) and asked_again > 0  # not resting: asked again, the answered texts from the cache


@pytest.mark.parametrize("how", ["down", "hang", "invalid"])
def test_an_llm_that_fails_answers_503_fast_never_a_hang(tmp_path: Path, script: Script, how: str) -> None:
    llm: dict[str, Any] = {"base_url": script.url, "model": "scripted", "timeout_s": 60}
    if how == "down":
        llm["base_url"] = f"http://127.0.0.1:{free_port()}/v1"
    elif how == "hang":
        script.plan.extend([("hang",)] * 50)
    else:
        script.plan.extend([("content", '{"label": "eggs"}')] * 50)
    ws = cold_fleet(tmp_path / "ws", llm, llm={"endpoint": "local", "timeout_s": 1, "cooldown_s": 60})
    coldstart.start(ws, "spam")
    with running(ws) as url:
        first, waited = predict(url, ["free entry in a weekly competition"])
        asked = len(script.requests)
        again, waited_again = predict(url, ["are we still on for lunch"])
        asked_again = len(script.requests) - asked
    if how == "invalid":  # an answer outside the labels is an error, counted, never a label
        assert first.status_code == again.status_code == 502
        assert first.json()["error"]["code"] == "llm_invalid_answer" and asked_again == 1
        return
    for response in (first, again):
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "llm_unavailable"
        assert response.headers["retry-after"] == "60"
    assert waited < 10, f"the first request waited {waited:.1f} s"
    assert waited_again < 2 and asked_again == 0  # resting: refused at once, the endpoint not asked


def test_an_llm_batch_in_flight_when_the_server_stops_is_refused_and_ends(
    tmp_path: Path, script: Script, caplog: pytest.LogCaptureFixture
) -> None:
    """The server stops while the LLM is still answering a batch (a client gone, its batch left running): the batch
    is cancelled, its request answered 503 `shutting_down`, no task is left running and nothing is logged as an
    error (the endpoint's client is closed only once the batch ended)."""
    script.plan.extend([("hang",)] * 5)
    ws = cold_fleet(
        tmp_path / "ws",
        {"base_url": script.url, "model": "scripted", "timeout_s": 60},
        llm={"endpoint": "local", "timeout_s": 60},
    )
    coldstart.start(ws, "spam")

    async def serve_then_stop() -> tuple[BaseException | None, list[asyncio.Task[Any]]]:
        pool = ModelPool(ws, Metrics(), poll_interval_s=60)
        await pool.refresh()
        slot = pool.slots["spam"]
        assert slot.current is not None
        asked = asyncio.create_task(slot.batcher.predict(slot.current, ["free entry in a weekly competition"]))
        async with asyncio.timeout(15):
            while not script.in_flight:
                await asyncio.sleep(0.01)
        await asyncio.wait_for(pool.stop(), 10)
        done, _ = await asyncio.wait([asked], timeout=10)
        left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task() and not task.done()]
        return (asked.exception() if done else None), left

    with caplog.at_level(logging.WARNING):
        refused, left = asyncio.run(serve_then_stop())
    assert isinstance(refused, ServeError) and (refused.status, refused.code) == (503, "shutting_down"), refused
    assert left == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    ws.close()


def test_an_llm_batch_cancelled_before_it_began_is_refused(tmp_path: Path, script: Script) -> None:
    """The server stops in the instant between a batch's task being made and its first step: the task never runs its
    body, and its request is still answered 503 `shutting_down` instead of waiting forever."""
    script.plan.extend([("hang",)] * 5)
    ws = cold_fleet(tmp_path / "ws", {"base_url": script.url, "model": "scripted", "timeout_s": 60})
    coldstart.start(ws, "spam")

    async def stop_at_once() -> BaseException | None:
        pool = ModelPool(ws, Metrics(), poll_interval_s=60)
        await pool.refresh()
        slot = pool.slots["spam"]
        assert slot.current is not None
        batcher = slot.batcher
        batcher.running = 10**6  # no batch may start yet: the request waits in the queue
        asked = asyncio.create_task(batcher.predict(slot.current, ["free entry in a weekly competition"]))
        async with asyncio.timeout(10):
            while not batcher.queued:
                await asyncio.sleep(0)
        batcher.running = 0
        batch = batcher.start_batch()
        assert batch is not None
        batcher.answer_on_loop(batch)  # its task is made, and cancelled by `stop` before its first step
        await batcher.stop()  # awaited inline (not a task of its own, which would let the batch's task begin)
        done, _ = await asyncio.wait([asked], timeout=10)
        await asyncio.wait_for(pool.stop(), 10)
        return asked.exception() if done else None

    refused = asyncio.run(stop_at_once())
    assert isinstance(refused, ServeError) and (refused.status, refused.code) == (503, "shutting_down"), refused
    ws.close()


def test_the_daily_spend_cap_stops_the_calls(tmp_path: Path, script: Script) -> None:
    # $0.001 a call (1000 prompt tokens at $1 per million): three calls, then the day's $0.0025 is spent
    llm = {"base_url": script.url, "model": "scripted", "price_in": 1.0, "max_cost_per_day": 0.0025}
    ws = cold_fleet(tmp_path / "ws", {**llm, "max_concurrency": 1})
    coldstart.start(ws, "spam")
    with running(ws) as url:
        statuses = [predict(url, [f"message number {i}"])[0] for i in range(6)]
        again = predict(url, ["message number 0"])[0]  # cached: costs nothing, answered
    assert [r.status_code for r in statuses] == [200] * 3 + [503] * 3
    assert {r.json()["error"]["code"] for r in statuses[3:]} == {"llm_capped"}
    assert all(0 < int(r.headers["retry-after"]) <= 86400 for r in statuses[3:])
    assert len(script.requests) == 3 and again.status_code == 200


def test_an_endpoint_renamed_in_the_fleet_file_leaves_the_llm_version_without_a_price(
    tmp_path: Path, script: Script
) -> None:
    """The production LLM version names endpoint `local`; the fleet file now calls it `renamed`: its LLM tier has no
    price to apply and is left out (it raised KeyError, which made /v1/models answer 500 for the whole fleet; the
    server refuses to load that version with a message naming the endpoint)."""
    ws = cold_fleet(tmp_path / "ws", {"base_url": script.url, "model": "scripted"})
    coldstart.start(ws, "spam")
    fleet = yaml.safe_load(ws.fleet_path.read_text(encoding="utf-8"))
    fleet["llm"] = {"renamed": fleet["llm"].pop("local")}
    fleet["models"]["spam"]["llm"]["endpoint"] = "renamed"
    ws.fleet_path.write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    ws.reload()
    assert coldstart.llm_tier(ws, "spam") is None


@pytest.mark.timeout(900)  # ~70 SmolLM2 calls and a training: a minute on a quiet machine, many on a loaded one
def test_the_real_local_llm_answers_a_cold_start_then_becomes_the_fallback(tmp_path: Path, texts: pd.DataFrame) -> None:
    """llama.cpp's server with SmolLM2 behind `shoal serve` (a real process): the LLM answers (labels of the set,
    logged), feedback joins, `shoal worker` trains a small version that the gate promotes, and the LLM is then only
    the fallback. SmolLM2 is too weak to classify well: this checks the path, never quality."""
    served, held_out, unseen = texts.iloc[:24], texts.iloc[300:340], texts.iloc[700:716]
    with local_llm(tmp_path) as api:
        llm = {"base_url": api, "model": "smollm2", "price_in": 0.15, "price_out": 0.6, "timeout_s": 120}
        ws = cold_fleet(
            tmp_path / "ws",
            llm,
            llm={"endpoint": "local", "min_rows": 24, "timeout_s": 120},
            gate={"non_inferiority_margin": 0.3},
        )
        coldstart.start(ws, "spam")
        ingest_file(ws, "spam", write_rows(tmp_path / "gold.csv", held_out), split="test")
        ws.close()
        with shoal_serve(ws.root, ready_within=60) as (url, _):
            before = answered(url, served["text"].tolist(), size=8)
            assert {answer["tier"] for _, _, answer in before} == {"llm"}
            assert {answer["label"] for _, _, answer in before} <= set(LABELS)
            for (request_id, index, _), label in list(zip(before, served["label"], strict=True))[::2]:
                sent = {"request_id": request_id, "index": index, "label": label}
                assert httpx.post(f"{url}/v1/models/spam/feedback", json=sent, timeout=60).status_code == 200
            assert Worker(Workspace(ws.root), worker_id="w1").run(once=True) == 1
            production = Workspace(ws.root).registry.alias("spam", PRODUCTION)
            assert production is not None and production > 1

            def demoted() -> bool:
                model = httpx.get(f"{url}/v1/models", timeout=60).json()["models"][0]
                return model["serving_version"] == production and (model["llm"] or {}).get("role") == "fallback"

            wait_until(demoted, "the small version serving with the LLM as its fallback", timeout=60)
            after = answered(url, unseen["text"].tolist(), size=8)
            assert {answer["tier"] for _, _, answer in after} <= {"small", "fallback", "small-fallback-down"}
            assert "small" in {answer["tier"] for _, _, answer in after}
