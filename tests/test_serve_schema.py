"""Schemathesis against the live server: generated requests for every documented operation never get a 5xx,
and every answer matches the OpenAPI schema (status codes, content types, headers, bodies and auth)."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from serve_fixtures import Trained, copy_workspace, running

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
