"""Schemathesis against the live server: generated requests for every documented operation never get a 5xx,
and every answer matches the OpenAPI schema (status codes, content types, headers, bodies and auth). The
documented predict and embed routes are the ones the task codecs declare."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings

from serve_fixtures import Trained, copy_workspace, running
from shoal.serve.predict import router

TOKEN = "schema-test-token"


def test_no_server_errors_and_answers_match_the_schema(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOAL_TOKEN", TOKEN)
    with running(copy_workspace(trained, tmp_path, server={"protect_predict": True})) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 7
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def check(case: schemathesis.Case) -> None:
                response = case.call_and_validate(base_url=url, headers=auth)
                assert response.status_code < 500

            check()


def test_the_routes_and_their_documented_models_come_from_the_task_codecs() -> None:
    app = FastAPI()
    app.include_router(router(protect=False))
    schema = app.openapi()
    components = schema["components"]["schemas"]

    def answers(path: str) -> dict[str, str]:
        """Each documented response of a route -> the schema of one of its answers."""
        body = schema["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        out = {}
        for ref in [item["$ref"] for item in body.get("anyOf", [body])]:
            name = ref.rsplit("/", 1)[1]
            (key,) = set(components[name]["properties"]) - {"model", "version", "request_id"}
            items = components[name]["properties"][key]["items"]
            out[f"{name}.{key}"] = items["$ref"].rsplit("/", 1)[1] if "$ref" in items else items["type"]
        return out

    assert answers("/v1/models/{name}/predict") == {
        "TextClassificationResponse.predictions": "Prediction",
        "RegressionResponse.predictions": "ValuePrediction",
        "ForecastingResponse.predictions": "SeriesForecast",
        "TokenClassificationResponse.predictions": "Entities",
    }
    assert answers("/v1/models/{name}/embed") == {"EmbeddingResponse.embeddings": "array"}
    predict = schema["paths"]["/v1/models/{name}/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert len(predict["schema"]["properties"]["inputs"]["anyOf"]) == 4  # texts, feature rows, series ids, NER texts
    assert "top_k applies to text-classification only" in predict["schema"]["description"]
