"""Bearer-token auth of `shoal serve`: state-changing endpoints always, predictions when configured."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import shoal
from serve_fixtures import Trained, copy_workspace, running

TOKEN = "s3cret-token-for-tests"
BODY = {"inputs": ["call me when you get home"]}


def test_token_protects_reload_and_optionally_predict(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOAL_TEST_TOKEN", TOKEN)
    ws = copy_workspace(trained, tmp_path, server={"token_env": "SHOAL_TEST_TOKEN", "protect_predict": True})
    with running(ws) as url:
        good = {"Authorization": f"Bearer {TOKEN}"}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            for response in (
                httpx.post(f"{url}/v1/models/spam/predict", json=BODY, headers=headers),
                httpx.post(f"{url}/v1/reload", headers=headers),
            ):
                assert response.status_code == 401, response.text
                assert response.headers["WWW-Authenticate"] == "Bearer"
                error = response.json()["error"]
                assert error["code"] == "unauthorized" and "$SHOAL_TEST_TOKEN" in error["message"]
                assert TOKEN not in response.text
        assert httpx.post(f"{url}/v1/models/spam/predict", json=BODY, headers=good).status_code == 200
        assert httpx.post(f"{url}/v1/reload", headers=good).status_code == 200
        assert httpx.get(f"{url}/healthz").status_code == 200 and httpx.get(f"{url}/v1/models").status_code == 200
        with shoal.Client(url, token=TOKEN) as client:
            assert client.predict("spam", BODY["inputs"])["model"] == "spam"
        with shoal.Client(url, token="wrong") as client, pytest.raises(shoal.ShoalError) as raised:
            client.predict("spam", BODY["inputs"])
        assert raised.value.status == 401
        schema = httpx.get(f"{url}/openapi.json").json()
        assert schema["paths"]["/v1/models/{name}/predict"]["post"]["security"] == [{"HTTPBearer": []}]


def test_predict_is_open_by_default_while_reload_needs_the_token(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOAL_TOKEN", TOKEN)
    with running(copy_workspace(trained, tmp_path)) as url:
        assert httpx.post(f"{url}/v1/models/spam/predict", json=BODY).status_code == 200
        assert httpx.post(f"{url}/v1/reload").status_code == 401
        assert httpx.post(f"{url}/v1/reload", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_without_a_token_nothing_is_locked(trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOAL_TOKEN", raising=False)
    with running(copy_workspace(trained, tmp_path)) as url:
        assert httpx.post(f"{url}/v1/reload").status_code == 200
