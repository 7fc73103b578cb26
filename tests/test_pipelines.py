"""Pipelines: the fleet file's `pipelines:` (each bad definition named by its key path), and
`POST /v1/pipelines/{name}/predict` on a real server with three real models: an SMS spam filter, a Banking77
intent classifier and a daily-temperature forecaster whose series are named after two intents (so an intent's
label can key a forecast)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from typer.testing import CliRunner

from client_load import Load
from conftest import FAST_WORKSPACE, read_csv, spam_model
from serve_fixtures import running
from shoal import Client
from shoal.cli import app
from shoal.client import ShoalError
from shoal.data.errors import DropRejected
from shoal.data.ingest import ingest_file
from shoal.fleet import FleetError, parse_fleet
from shoal.pipelines.evaluate import evaluate_pipeline
from shoal.pipelines.testset import ingest_pipeline_test
from shoal.registry import PRODUCTION
from shoal.train.trainer import train_models
from shoal.workspace import REGISTRY_ENV, Workspace

INTENTS = ["card_arrival", "exchange_rate", "lost_or_stolen_card", "top_up_failed"]
SERIES = ["card_arrival", "exchange_rate"]  # the forecaster's series: two of the intents
SERVE = {"max_batch_size": 64, "max_inputs": 64}
PIPELINES: dict[str, Any] = {
    "inbox": {
        "description": "spam filter, then intent, then the intent's forecast",
        "steps": [
            {"model": "spam", "stop": {"label": ["spam"]}},
            {"model": "intent"},
            {"name": "volume", "model": "volume", "input": {"from": "intent", "field": "label"}},
            {"name": "unsure", "model": "intent", "when": {"step": "spam", "probability_below": 0.95}},
            {"name": "cards", "model": "intent", "when": {"step": "intent", "label": ["card_arrival"]}},
        ],
    },
    "side": {"steps": [{"model": "spam"}, {"model": "intent"}]},
    "twice": {
        "steps": [
            {"model": "spam"},
            {"name": "again", "model": "spam", "when": {"step": "spam", "label": ["ham", "spam"]}},
        ]
    },
}

# `shoal promote` from another process (the registry alone keeps it fast)
PROMOTE = """
import sys
from pathlib import Path
from shoal.registry import Registry
root = Path(sys.argv[1])
Registry(f"sqlite:///{root / '.shoal' / 'registry.db'}", root / ".shoal" / "artifacts").set_alias(
    "spam", int(sys.argv[2]), actor="manual", reason="pipeline swap test"
)
"""


def _models() -> dict[str, Any]:
    return {
        "spam": spam_model(serve=SERVE, cv_folds=2),
        "intent": {
            "task": "text-classification",
            "metric": "accuracy",
            "families": ["tfidf-logreg"],
            "cv_folds": 2,
            "serve": SERVE,
        },
        "volume": {
            "task": "forecasting",
            "id_column": "intent",
            "time_column": "Date",
            "value_column": "Temperature",
            "freq": "D",
            "horizon": 3,
            "families": ["seasonal-naive"],
            "serve": SERVE,
        },
    }


def _write_fleet(root: Path, pipelines: dict[str, Any], server: dict[str, Any] | None = None) -> None:
    fleet = {
        "workspace": {**FAST_WORKSPACE, "n_jobs": 1, "server": {"poll_interval_s": 0.2, **(server or {})}},
        "models": _models(),
        "pipelines": pipelines,
    }
    (root / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipelines") / "ws"
    root.mkdir()
    _write_fleet(root, PIPELINES)
    read_csv("sms_spam/sms_spam.csv").iloc[:500].to_csv(root / "spam.csv", index=False)
    banking = read_csv("banking77/train.csv")
    banking[banking["label"].isin(INTENTS)].to_csv(root / "intent.csv", index=False)
    temperatures = read_csv("daily_max_temperatures/daily-max-temperatures.csv")
    years = [temperatures.iloc[:730].assign(intent=SERIES[0]), temperatures.iloc[730:1460].assign(intent=SERIES[1])]
    pd.concat(years).to_csv(root / "volume.csv", index=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(REGISTRY_ENV, raising=False)
        ws = Workspace(root)
        for name in ("spam", "intent", "volume"):
            ingest_file(ws, name, root / f"{name}.csv")
        reports = train_models(ws, ["spam", "intent", "volume"])
        assert all(report.error is None for report in reports), [r.error for r in reports]
        ws.close()
    return root


def _copy(trained_root: Path, folder: Path, pipelines: dict[str, Any] = PIPELINES, **server: Any) -> Workspace:
    root = folder / "ws"
    shutil.copytree(trained_root, root)
    _write_fleet(root, pipelines, server)
    return Workspace(root)


@pytest.fixture(scope="module")
def url(trained_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(REGISTRY_ENV, raising=False)
        with running(_copy(trained_root, tmp_path_factory.mktemp("served"))) as served:
            yield served


def _texts() -> list[str]:
    sms = read_csv("sms_spam/sms_spam.csv").iloc[500:700]
    spam = sms[sms["label"] == "spam"]["text"].tolist()[:6]
    ham = sms[sms["label"] == "ham"]["text"].tolist()[:4]
    banking = read_csv("banking77/test.csv")
    intents = banking[banking["label"].isin(INTENTS)].groupby("label").head(3)["text"].tolist()
    return spam + ham + intents


def _predict(url: str, model: str, inputs: list[str]) -> list[dict[str, Any]]:
    response = httpx.post(f"{url}/v1/models/{model}/predict", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    return response.json()["predictions"]  # type: ignore[no-any-return]


def test_routing_stop_when_fan_out_and_a_fed_field_match_each_models_own_answers(url: str) -> None:
    texts = _texts()
    body = httpx.post(f"{url}/v1/pipelines/inbox/predict", json={"inputs": texts}).json()
    spam, intent = _predict(url, "spam", texts), _predict(url, "intent", texts)
    assert body["pipeline"] == "inbox" and set(body["versions"]) == {"spam", "intent", "volume"}
    seen = {"stopped": 0, "fed": 0, "rejected": 0, "unsure": 0, "sure": 0, "cards": 0}
    for result, s, i in zip(body["results"], spam, intent, strict=True):
        steps, skipped = result["steps"], result["skipped"]
        assert {k: steps["spam"][k] for k in ("label", "probability")} == pytest.approx(s)
        assert steps["spam"]["model"] == "spam" and steps["spam"]["version"] == body["versions"]["spam"]
        if s["label"] == "spam":  # stop: the later steps are skipped, saying where it stopped
            seen["stopped"] += 1
            assert result["stopped_at"] == "spam" and list(steps) == ["spam"]
            assert skipped == {name: "stopped at step 'spam'" for name in ("intent", "volume", "unsure", "cards")}
            continue
        assert result["stopped_at"] is None
        assert {k: steps["intent"][k] for k in ("label", "probability")} == pytest.approx(i)
        if i["label"] in SERIES:  # the intent's label keys the forecast
            seen["fed"] += 1
            [forecast] = _predict(url, "volume", [i["label"]])
            assert steps["volume"]["series"] == i["label"] and steps["volume"]["forecast"] == forecast["forecast"]
        else:  # a label that is no series of the forecaster: skipped with the model's reason
            seen["rejected"] += 1
            assert "volume" not in steps and f"unknown series {i['label']!r}" in skipped["volume"]
        if s["probability"] < 0.95:  # only when the spam filter is unsure
            seen["unsure"] += 1
            assert steps["unsure"]["label"] == i["label"] and "unsure" not in skipped
        else:
            seen["sure"] += 1
            assert "unsure" not in steps and skipped["unsure"].startswith("when: step 'spam''s probability")
        if i["label"] == "card_arrival":  # only when the intent is one of a set of labels
            seen["cards"] += 1
            assert "cards" in steps
        else:
            assert skipped["cards"] == f"when: step 'intent''s label {i['label']!r} is not one of 'card_arrival'"
        assert list(steps) + list(skipped) != [] and set(steps).isdisjoint(skipped)
    assert all(seen.values()), seen  # every branch was taken by some input

    side = httpx.post(f"{url}/v1/pipelines/side/predict", json={"inputs": texts}).json()
    for result, s, i in zip(side["results"], spam, intent, strict=True):  # fan-out: both answers, by step name
        assert result["steps"]["spam"]["label"] == s["label"] and result["steps"]["intent"]["label"] == i["label"]
        assert result["skipped"] == {} and result["stopped_at"] is None


def test_a_requests_inputs_reach_each_step_in_one_batch_and_metrics_count_them(url: str) -> None:
    def batches(model: str) -> float:
        text = httpx.get(f"{url}/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(f'shoal_batch_size_count{{model="{model}"')
        )

    texts = _texts()
    before = batches("intent")
    assert httpx.post(f"{url}/v1/pipelines/side/predict", json={"inputs": texts}).status_code == 200
    assert batches("intent") == before + 1
    metrics = httpx.get(f"{url}/metrics").text
    assert 'shoal_pipeline_requests_total{pipeline="side",code="200"}' in metrics
    assert 'shoal_pipeline_step_inputs_total{pipeline="side",step="intent",result="answered"}' in metrics


def test_waves_run_independent_steps_together_after_every_stop() -> None:
    fleet = parse_fleet({"models": _models(), "pipelines": PIPELINES}, Path("shoal.yaml"))
    waves = {name: [[s.name for s in wave] for wave in p.waves] for name, p in fleet.pipelines.items()}
    assert waves == {
        "inbox": [["spam"], ["intent", "unsure"], ["volume", "cards"]],
        "side": [["spam", "intent"]],
        "twice": [["spam"], ["again"]],
    }


@pytest.mark.parametrize(
    ("pipelines", "expected"),
    [
        ({"p": {"steps": [{"model": "x"}]}}, "pipelines.p.steps.0.model: no model 'x' in the fleet"),
        (
            {"p": {"steps": [{"model": "spam", "when": {"step": "intent", "label": ["a"]}}, {"model": "intent"}]}},
            "pipelines.p.steps.0.when.step: step 'intent' comes later; a step reads only earlier steps (a cycle",
        ),
        (
            {"p": {"steps": [{"model": "spam", "input": {"from": "nope", "field": "label"}}]}},
            "pipelines.p.steps.0.input.from: no step 'nope' in this pipeline (steps: spam)",
        ),
        (
            {"p": {"steps": [{"model": "spam", "when": {"step": "spam", "label": ["a"]}}]}},
            "pipelines.p.steps.0.when.step: step 'spam' cannot read itself",
        ),
        ({"p": {"steps": [{"model": "spam"}, {"model": "spam"}]}}, "pipelines.p.steps.1.name: step 'spam' comes twice"),
        (
            {
                "p": {
                    "steps": [{"model": "spam"}, {"model": "volume", "input": {"from": "spam", "field": "probability"}}]
                }
            },
            "pipelines.p.steps.1.input.field: a text-classification answer has no text field 'probability'",
        ),
        (
            {"p": {"steps": [{"model": "spam"}, {"model": "intent", "when": {"step": "spam"}}]}},
            "pipelines.p.steps.1.when: give label, probability_above or probability_below",
        ),
        (
            {"p": {"steps": [{"model": "volume", "stop": {"label": ["a"]}}]}},
            "pipelines.p.steps.0.stop: a forecasting answer has no label and probability to match",
        ),
        (
            {"p": {"steps": [{"model": "spam"}, {"model": "rows"}]}},
            "pipelines.p.steps.1.model: 'rows' (regression) reads another kind of input than step 'spam'",
        ),
        (
            {"p": {"steps": [{"model": "spam"}, {"model": "rows", "input": {"from": "spam", "field": "label"}}]}},
            "pipelines.p.steps.1.input: 'rows' (regression) does not read a text",
        ),
        (
            {"p": {"steps": [{"model": "spam", "stop": {"probability_above": 2}}]}},
            "pipelines.p.steps.0.stop.probability_above: Input should be less than or equal to 1",
        ),
        ({"p": {"steps": [{"model": "spam", "colour": "red"}]}}, "pipelines.p.steps.0.colour: unknown key"),
        ({"p": {"steps": []}}, "pipelines.p.steps: List should have at least 1 item"),
        ({"Bad Name": {"steps": [{"model": "spam"}]}}, "names are lowercase letters"),
    ],
)
def test_a_bad_pipeline_is_rejected_naming_its_key_path(pipelines: dict[str, Any], expected: str) -> None:
    models = {
        **_models(),
        "rows": {"task": "regression", "metric": "rmse", "families": ["ridge"], "target_column": "y"},
    }
    with pytest.raises(FleetError) as caught:
        parse_fleet({"models": models, "pipelines": pipelines}, Path("shoal.yaml"))
    assert expected in str(caught.value) and str(caught.value).startswith("shoal.yaml: ")


def test_a_condition_on_a_label_the_model_does_not_declare_is_rejected() -> None:
    models = _models()
    models["spam"] = {**models["spam"], "labels": ["ham", "spam"]}
    typo = {"p": {"steps": [{"model": "spam", "stop": {"label": ["Spam"]}}, {"model": "intent"}]}}
    with pytest.raises(FleetError) as caught:
        parse_fleet({"models": models, "pipelines": typo}, Path("shoal.yaml"))
    assert "pipelines.p.steps.0.stop.label: 'Spam' not among the labels model 'spam' declares (ham, spam)" in str(
        caught.value
    )
    later = {"p": {"steps": [{"model": "spam"}, {"model": "intent", "when": {"step": "spam", "label": ["hm"]}}]}}
    with pytest.raises(FleetError, match=r"pipelines\.p\.steps\.1\.when\.label: 'hm' not among the labels"):
        parse_fleet({"models": models, "pipelines": later}, Path("shoal.yaml"))
    fine = {"p": {"steps": [{"model": "spam", "stop": {"label": ["spam"]}}, {"model": "intent"}]}}
    assert parse_fleet({"models": models, "pipelines": fine}, Path("shoal.yaml")).pipelines["p"]


def test_unknown_pipeline_and_bad_bodies_answer_as_predict_does(url: str) -> None:
    post = lambda path, **kw: httpx.post(f"{url}{path}", **kw)  # noqa: E731
    missing = post("/v1/pipelines/nope/predict", json={"inputs": ["hi"]})
    assert missing.status_code == 404
    assert "no pipeline 'nope' in the fleet file (pipelines: inbox, side, twice)" in missing.text
    assert missing.headers["X-Request-ID"]
    assert post("/v1/pipelines/side/predict", content=b'{"inputs": ["a"]}').status_code == 415
    cases = [
        (b"{not json", 422, "not valid JSON"),
        (b'{"inputs": []}', 422, "inputs"),
        (b'{"inputs": ["a"], "top_k": 2}', 422, "top_k: unknown key"),
        (b'{"inputs": [{"a": 1}]}', 422, "inputs.0"),
        (b'{"inputs": ["\xff"]}', 422, "not UTF-8"),
        (b'{"inputs": [' + b",".join([b'"a"'] * 65) + b"]}", 413, "takes at most 64"),
    ]
    for content, status, message in cases:
        response = post("/v1/pipelines/side/predict", content=content, headers={"Content-Type": "application/json"})
        assert response.status_code == status and message in response.json()["error"]["message"], response.text
    listed = httpx.get(f"{url}/v1/pipelines").json()["pipelines"]
    assert [p["name"] for p in listed] == ["inbox", "side", "twice"]
    assert listed[0]["steps"][2] == {"name": "volume", "model": "volume", "input": {"from": "intent", "field": "label"}}
    assert listed[0]["models"] == {"spam": "ready", "intent": "ready", "volume": "ready"}
    schema = httpx.get(f"{url}/openapi.json").json()
    operation = schema["paths"]["/v1/pipelines/{name}/predict"]["post"]
    assert {"200", "404", "413", "415", "422", "503"} <= operation["responses"].keys()
    assert "PipelineResult" in schema["components"]["schemas"]


def test_the_client_predicts_with_a_pipeline(url: str) -> None:
    with Client(url) as client:
        body = client.predict_pipeline("side", "I am still waiting on my card?")
        assert body["results"][0]["steps"]["intent"]["label"] == "card_arrival"
        with pytest.raises(ShoalError) as caught:
            client.predict_pipeline("nope", ["x"])
    assert caught.value.status == 404 and caught.value.code == "not_found"


def test_a_protected_server_wants_the_token_for_pipelines(
    trained_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    monkeypatch.setenv("SHOAL_TOKEN", "s3cret")
    with running(_copy(trained_root, tmp_path, protect_predict=True)) as served:
        path = f"{served}/v1/pipelines/side/predict"
        assert httpx.post(path, json={"inputs": ["a"]}).status_code == 401
        ok = httpx.post(path, json={"inputs": ["a"]}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_a_swap_during_pipeline_requests_never_mixes_versions_and_fails_none(
    trained_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16 clients send a pipeline that asks `spam` twice per input while another process promotes spam's other
    version: every answer uses one version of spam throughout, and not one request fails."""
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    ws = _copy(trained_root, tmp_path)
    old = ws.registry.alias("spam", PRODUCTION)
    [new] = [v.number for v in ws.registry.versions("spam") if v.number != old]
    mixed: list[Any] = []

    def version(body: dict[str, Any]) -> int:
        used = {body["versions"]["spam"]}
        for result in body["results"]:
            used |= {step["version"] for step in result["steps"].values()}
        for result in body["results"]:  # the same model on the same input: the same answer, unless versions mixed
            first, again = result["steps"]["spam"], result["steps"]["again"]
            if (first["label"], first["probability"]) != (again["label"], again["probability"]):
                used.add(-1)
        if len(used) != 1:
            mixed.append(body)
        return int(body["versions"]["spam"])

    texts = _texts()[:8]
    with running(ws) as served:
        with Load(f"{served}/v1/pipelines/twice/predict", {"inputs": texts}, version_of=version) as load:
            load.wait(lambda _: load.every_client_got(old, 3), "the clients got no answers", timeout_s=30)
            subprocess.run([sys.executable, "-c", PROMOTE, str(ws.root), str(new)], check=True, timeout=60)
            load.wait(lambda _: load.every_client_got(new, 3), "not every client reached the new version", timeout_s=30)
        assert load.failures == [], load.failures[:5]
        assert mixed == []
        load.check_switch(old, new)


def _inbox_cases(path: Path) -> pd.DataFrame:
    """A mixed inbox: SMS texts (judged on spam only) and Banking77 texts (ham, and their intent)."""
    sms = read_csv("sms_spam/sms_spam.csv").iloc[500:620]
    banking = read_csv("banking77/test.csv")
    banking = banking[banking["label"].isin(INTENTS)]
    spam = sms[sms["label"] == "spam"].head(5)
    cases = pd.concat(
        [
            pd.DataFrame({"text": sms["text"], "spam": sms["label"], "intent": ""}),
            pd.DataFrame({"text": banking["text"], "spam": "ham", "intent": banking["label"]}),
            # texts the spam filter stops where the file expects an intent: the skipped step counts as wrong
            pd.DataFrame({"text": spam["text"], "spam": "ham", "intent": "card_arrival"}),
        ]
    )
    cases.to_csv(path, index=False)
    return cases


def test_eval_pipeline_judges_end_to_end_and_per_step_with_the_production_versions(
    trained_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    ws = _copy(trained_root, tmp_path)
    cases = _inbox_cases(ws.root / "inbox-test.csv")
    shown = CliRunner().invoke(
        app, ["eval", "--pipeline", "inbox", "-w", str(ws.root), "--data", str(ws.root / "inbox-test.csv"), "--json"]
    )
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.output)

    # the same rule computed here from each production model's own predictions
    spam, intent = ({}, {})
    for model, found in (("spam", spam), ("intent", intent)):
        number = ws.registry.alias(model, PRODUCTION)
        predictor = ws.load_predictor(ws.registry.version(model, number))
        found.update(enumerate(predictor.predict(cases["text"].tolist())))
        assert report["versions"][model] == number
    truth_spam, truth_intent = cases["spam"].tolist(), cases["intent"].tolist()
    spam_right = [spam[i] == truth_spam[i] for i in range(len(cases))]
    intent_rows = [i for i in range(len(cases)) if truth_intent[i]]
    # the intent step answers only where the spam step did not stop the input
    intent_right = [spam[i] != "spam" and intent[i] == truth_intent[i] for i in intent_rows]
    end = [
        spam_right[i] and (not truth_intent[i] or (spam[i] != "spam" and intent[i] == truth_intent[i]))
        for i in range(len(cases))
    ]
    assert report["n"] == len(cases) and report["stopped"] == {"spam": sum(s == "spam" for s in spam.values())}
    assert report["steps"]["spam"]["accuracy"] == pytest.approx(sum(spam_right) / len(cases))
    assert report["steps"]["intent"]["n"] == len(intent_rows)
    assert report["steps"]["intent"]["accuracy"] == pytest.approx(sum(intent_right) / len(intent_rows))
    assert report["steps"]["intent"]["skipped"] == sum(spam[i] == "spam" for i in intent_rows) > 0
    assert report["end_to_end"]["accuracy"] == pytest.approx(sum(end) / len(cases))
    low, high = report["end_to_end"]["ci"]
    assert low <= report["end_to_end"]["accuracy"] <= high and high - low < 0.2
    table = CliRunner().invoke(
        app, ["eval", "--pipeline", "inbox", "-w", str(ws.root), "--data", str(ws.root / "inbox-test.csv")]
    )
    assert table.exit_code == 0 and "end to end" in table.output and "step intent" in table.output


def test_a_bad_pipeline_test_file_names_the_column_or_line(
    trained_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    ws = _copy(trained_root, tmp_path)
    path = ws.root / "bad.csv"
    for content, expected in [
        (
            "text,colour\nhi,red\n",
            "column 'colour' is no step of the pipeline (steps: spam, intent, volume, unsure, cards)",
        ),
        ("text,volume\nhi,x\n", "column 'volume': step 'volume' answers no label to judge"),
        ("spam\nham\n", "no 'text' column"),
        ("text,spam\nhi,ham\n,spam\n", "line 3: text: expected a text"),
    ]:
        path.write_text(content, encoding="utf-8")
        with pytest.raises(DropRejected) as caught:
            evaluate_pipeline(ws, "inbox", path)
        assert expected in str(caught.value)
    with pytest.raises(
        FleetError, match=r"pipeline 'inbox' has no test set: register one with 'shoal ingest --pipeline"
    ):
        evaluate_pipeline(ws, "inbox")
    with pytest.raises(FleetError, match="no pipeline 'nope'"):
        evaluate_pipeline(ws, "nope", path)


def test_generated_pipeline_requests_get_no_server_error_and_match_the_schema(url: str) -> None:
    """Schemathesis on the pipeline routes, with the name of a served pipeline and with generated names."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [op.ok() for op in schema.get_all_operations() if op.ok().path.startswith("/v1/pipelines")]
    assert len(operations) == 2
    for operation in operations:
        for name in ("side", "inbox", None):
            _schema_check(operation, url, name)()


def _schema_check(operation: Any, url: str, name: str | None) -> Any:
    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: schemathesis.Case) -> None:
        if name is not None and case.path_parameters:
            case.path_parameters["name"] = name
        body = case.body if isinstance(case.body, dict) else {}
        inputs = body.get("inputs")
        # rows are a valid body for a pipeline that reads rows: for these text pipelines, a documented 422
        rows = isinstance(inputs, list) and not all(isinstance(item, str) for item in inputs)
        response = case.call_and_validate(base_url=url, excluded_checks=[positive_data_acceptance] if rows else None)
        assert response.status_code < 500

    return check


def test_feedback_names_a_pipeline_input_by_its_request_id_and_index(url: str) -> None:
    """Each step's predictions are logged at the index of the pipeline's input, so feedback on an input that
    reached `intent` after stopped inputs joins that input's text."""
    texts = _texts()  # spam texts first: the banking texts are not at the same index among intent's inputs
    body = httpx.post(f"{url}/v1/pipelines/inbox/predict", json={"inputs": texts}).json()
    index = len(texts) - 1
    assert body["results"][0]["stopped_at"] == "spam" and "intent" in body["results"][index]["steps"]
    sent = {"request_id": body["request_id"], "label": "card_arrival", "index": index}
    joined = httpx.post(f"{url}/v1/models/intent/feedback", json=sent)
    assert joined.status_code == 200, joined.text
    predicted = body["results"][index]["steps"]["intent"]["label"]
    assert joined.json()["index"] == index and joined.json()["predicted"] == predicted
    stopped = httpx.post(f"{url}/v1/models/intent/feedback", json={**sent, "index": 0})
    assert stopped.status_code == 422  # input 0 stopped at spam: intent never answered it


def test_a_refit_promoted_in_place_of_the_challenger_is_judged_in_the_pipeline(
    trained_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new day for the forecaster: its refit is promoted because the production forecast is stale, not because
    the gate found it better. The pipeline rule judges that refit (the version actually promoted), and the history
    records no gain for it (the gate's figures belong to the refused challenger)."""
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    steps = PIPELINES["inbox"]["steps"][:3]
    ws = _copy(trained_root, tmp_path, {"inbox": {"steps": steps, "gate": {"no_significant_drop": True}}})
    sms = read_csv("sms_spam/sms_spam.csv").iloc[500:560]
    banking = read_csv("banking77/test.csv")
    banking = banking[banking["label"].isin(INTENTS)].groupby("label").head(5)
    cases = pd.concat(
        [
            pd.DataFrame({"text": sms["text"], "spam": sms["label"], "intent": ""}),
            pd.DataFrame({"text": banking["text"], "spam": "ham", "intent": banking["label"]}),
        ]
    )
    cases.to_csv(ws.root / "inbox-test.csv", index=False)
    ingest_pipeline_test(ws, "inbox", ws.root / "inbox-test.csv")
    temperatures = read_csv("daily_max_temperatures/daily-max-temperatures.csv")
    temperatures.iloc[1460:1461].assign(intent=SERIES[1]).to_csv(ws.root / "day.csv", index=False)
    ingest_file(ws, "volume", ws.root / "day.csv")
    before = ws.registry.alias("volume", PRODUCTION)
    [report] = train_models(ws, ["volume"])
    decision = report.decision
    assert decision is not None and decision.promote and report.production != before, decision
    assert decision.reason.startswith(f"promoted: v{report.production} refits the production family")
    assert f"; pipeline 'inbox' end to end on {len(cases)} inputs of test drop" in decision.reason
    assert f"with v{report.production})" in decision.reason
    [score] = ws.registry.pipeline_scores("inbox")
    assert (score.model, score.from_version, score.to_version) == ("volume", before, report.production)
    assert score.record["gain"] is None and score.record["versions"]["volume"] == report.production
