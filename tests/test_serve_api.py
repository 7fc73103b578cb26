"""`shoal serve` over real HTTP: predictions, batching, errors, model status, health, metrics and clients."""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest

import shoal
from serve_fixtures import SERVE, Trained

TEXTS = [
    "WINNER!! You have won a free prize, call 09061701461 now to claim",
    "Are we still meeting for lunch tomorrow?",
    "URGENT: your mobile number has been awarded a 2000 pound bonus, text CLAIM to 81010",
    "ok see you at home later",
]


def predict(url: str, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{url}/v1/models/spam/predict", json=body, **kwargs)  # type: ignore[arg-type]


def test_predicts_one_text_with_version_and_request_id(served: tuple[str, Trained]) -> None:
    url, trained = served
    response = predict(url, {"inputs": [TEXTS[0]]})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "spam" and body["version"] == trained.production
    assert body["request_id"] == response.headers["X-Request-ID"]
    [answer] = body["predictions"]
    assert answer["label"] in ("ham", "spam") and 0.5 <= answer["probability"] <= 1
    assert "top_k" not in answer and "probabilities" not in answer

    echoed = predict(url, {"inputs": [TEXTS[1]]}, headers={"X-Request-ID": "trace-42"})
    assert echoed.headers["X-Request-ID"] == "trace-42" and echoed.json()["request_id"] == "trace-42"
    unsafe = predict(url, {"inputs": [TEXTS[1]]}, headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["X-Request-ID"] != "bad id\twith spaces"


def test_many_inputs_are_split_into_batches_and_merged_in_order(served: tuple[str, Trained]) -> None:
    url, _ = served
    texts = TEXTS * 5  # 20 inputs with max_batch_size 8: three batches at least
    many = predict(url, {"inputs": texts}).json()["predictions"]
    single = [predict(url, {"inputs": [text]}).json()["predictions"][0] for text in texts]
    assert [a["label"] for a in many] == [b["label"] for b in single]
    pairs = zip(many, single, strict=True)
    assert all(math.isclose(a["probability"], b["probability"], rel_tol=1e-9) for a, b in pairs)
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    bucket = next(line for line in lines if line.startswith("shoal_batch_size_bucket") and 'le="8"' in line)
    total = next(line for line in lines if line.startswith("shoal_batch_size_count"))
    assert bucket.split()[-1] == total.split()[-1], "a batch was larger than max_batch_size"


def test_top_k_and_probabilities(served: tuple[str, Trained]) -> None:
    url, _ = served
    body = predict(url, {"inputs": TEXTS[:2], "top_k": 5, "return_probabilities": True}).json()
    for answer in body["predictions"]:
        assert len(answer["top_k"]) == 2  # capped at the number of labels
        assert answer["top_k"][0] == {"label": answer["label"], "probability": answer["probability"]}
        assert answer["top_k"][0]["probability"] >= answer["top_k"][1]["probability"]
        assert set(answer["probabilities"]) == {"ham", "spam"}
        assert math.isclose(sum(answer["probabilities"].values()), 1.0, rel_tol=1e-6)
    one = predict(url, {"inputs": TEXTS[:1], "top_k": 1}).json()["predictions"][0]
    assert len(one["top_k"]) == 1 and "probabilities" not in one


BAD_BODIES = [
    ({"inputs": []}, "inputs"),
    ({"inputs": [""]}, "inputs.0"),
    ({"inputs": "a single string"}, "inputs"),
    ({"inputs": ["ok", 3]}, "inputs.1"),
    ({"texts": ["wrong key"]}, "inputs"),
    ({"inputs": ["ok"], "extra": 1}, "extra"),
    ({"inputs": ["ok"], "top_k": 0}, "top_k"),
    ({"inputs": ["ok"], "top_k": "2"}, "top_k"),
    ({"inputs": ["ok"], "top_k": True}, "top_k"),
    ({"inputs": ["ok"], "return_probabilities": "yes"}, "return_probabilities"),
    ([["not", "an", "object"]], "body"),
]


@pytest.mark.parametrize(("body", "where"), BAD_BODIES)
def test_invalid_bodies_answer_422_naming_the_field(served: tuple[str, Trained], body: object, where: str) -> None:
    response = predict(served[0], body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["message"].startswith(where)


def test_errors_are_json_with_the_right_status_and_never_500(served: tuple[str, Trained]) -> None:
    url, _ = served
    cases = {
        "unknown model": (httpx.post(f"{url}/v1/models/nope/predict", json={"inputs": ["x"]}), 404, "not_found"),
        "unknown model detail": (httpx.get(f"{url}/v1/models/nope"), 404, "not_found"),
        "not json": (
            httpx.post(f"{url}/v1/models/spam/predict", content=b"{nope", headers={"content-type": "application/json"}),
            422,
            "invalid_request",
        ),
        "too many inputs": (predict(url, {"inputs": ["x"] * (SERVE["max_inputs"] + 1)}), 413, "too_many_inputs"),
        "body too large": (predict(url, {"inputs": ["x" * 1_100_000]}), 413, "too_large"),
        "chunked body too large": (
            httpx.post(f"{url}/v1/models/spam/predict", content=iter([b"[" + b" " * 600_000] * 2)),
            413,
            "too_large",
        ),
        "unknown route": (httpx.get(f"{url}/v2/nothing"), 404, "not_found"),
        "wrong method": (httpx.get(f"{url}/v1/models/spam/predict"), 405, "method_not_allowed"),
    }
    for name, (response, status, code) in cases.items():
        assert response.status_code == status, (name, response.text)
        assert response.json()["error"]["code"] == code, name
        assert response.json()["error"]["message"], name
    assert "413" in httpx.get(f"{url}/metrics").text


def test_models_list_and_detail(served: tuple[str, Trained]) -> None:
    url, trained = served
    [summary] = httpx.get(f"{url}/v1/models").json()["models"]
    assert summary["name"] == "spam" and summary["task"] == "text-classification"
    assert summary["production_version"] == summary["serving_version"] == trained.production
    assert summary["status"] == "ready"
    assert summary["metrics"]["metric"] == "f1:spam" and summary["metrics"]["value"] > 0.5  # the majority floor: 0
    detail = httpx.get(f"{url}/v1/models/spam").json()
    assert {v["number"] for v in detail["versions"]} == {trained.production, trained.other}
    assert [v["number"] for v in detail["versions"] if v["serving"]] == [trained.production]
    assert any(e["kind"] == "promoted" and e["version"] == trained.production for e in detail["gate_history"])
    assert detail["swap"]["swaps"] == 1 and detail["swap"]["last_error"] is None


def test_health_readiness_and_metrics(served: tuple[str, Trained]) -> None:
    url, trained = served
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{url}/readyz").json() == {"ready": True, "models": {"spam": "ready"}}
    predict(url, {"inputs": TEXTS[:1]})
    response = httpx.get(f"{url}/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    v = trained.production
    for series in (
        f'shoal_requests_total{{model="spam",version="{v}",code="200"}}',
        f'shoal_request_duration_seconds_bucket{{model="spam",version="{v}",le="+Inf"}}',
        f'shoal_queue_wait_seconds_count{{model="spam",version="{v}"}}',
        f'shoal_batch_size_count{{model="spam",version="{v}"}}',
        f'shoal_batch_flushes_total{{model="spam",version="{v}",reason="drained"}}',
        f'shoal_model_loads_total{{model="spam",version="{v}",result="ok"}} 1',
        f'shoal_model_serving{{model="spam",version="{v}"}} 1',
        'shoal_queue_depth{model="spam"} 0',
    ):
        assert series in text, series


def test_openapi_documents_bodies_and_errors(served: tuple[str, Trained]) -> None:
    schema = httpx.get(f"{served[0]}/openapi.json").json()
    operation = schema["paths"]["/v1/models/{name}/predict"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["inputs"] and body["additionalProperties"] is False
    assert {"200", "404", "413", "422", "503"} <= set(operation["responses"])
    assert operation["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")


def test_sync_client(served: tuple[str, Trained]) -> None:
    url, trained = served
    with shoal.Client(url) as client:
        answer = client.predict("spam", TEXTS[0], top_k=2)
        assert answer["version"] == trained.production and len(answer["predictions"][0]["top_k"]) == 2
        assert len(client.predict("spam", TEXTS, return_probabilities=True)["predictions"]) == len(TEXTS)
        assert [m["name"] for m in client.models()] == ["spam"]
        assert client.model("spam")["serving_version"] == trained.production
        with pytest.raises(shoal.ShoalError) as raised:
            client.predict("nope", "x")
        assert raised.value.status == 404 and raised.value.code == "not_found"


def test_async_client(served: tuple[str, Trained]) -> None:
    url, trained = served

    async def run() -> None:
        async with shoal.AsyncClient(url) as client:
            answers = await asyncio.gather(*(client.predict("spam", [text]) for text in TEXTS))
            assert {a["version"] for a in answers} == {trained.production}
            assert (await client.models())[0]["name"] == "spam"
            assert (await client.model("spam"))["name"] == "spam"
            with pytest.raises(shoal.ShoalError) as raised:
                await client.predict("spam", [""])
            assert raised.value.status == 422

    asyncio.run(run())


def test_feedback_on_a_prediction_shows_as_live_accuracy(served: tuple[str, Trained]) -> None:
    url, trained = served
    answered = predict(url, {"inputs": [TEXTS[0], TEXTS[1]]}).json()
    request_id = answered["request_id"]
    for position, label in enumerate(["spam", "spam"]):  # the second label disagrees with a "ham" prediction
        sent = httpx.post(
            f"{url}/v1/models/spam/feedback", json={"request_id": request_id, "index": position, "label": label}
        )
        assert sent.status_code == 200, sent.text

    def live() -> dict:
        return next(v for v in httpx.get(f"{url}/v1/models/spam").json()["versions"] if v["serving"])

    version = live()
    assert version["feedback_count"] >= 2
    predicted = [p["label"] for p in answered["predictions"]]
    assert predicted == ["spam", "ham"]
    assert version["live_accuracy"] is not None and version["live_accuracy"] < 1.0
    metrics = httpx.get(f"{url}/metrics").text
    assert f'shoal_live_accuracy{{model="spam",version="{trained.production}"}}' in metrics
