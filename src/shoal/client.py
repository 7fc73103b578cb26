"""Python clients of `shoal serve`: `Client` (blocking) and `AsyncClient` (asyncio), both over httpx.

    with shoal.Client("http://127.0.0.1:8000") as client:
        client.predict("spam", ["win a free phone now"], top_k=2)

Every method returns the server's JSON as plain dicts; an error answer raises `ShoalError` with the HTTP
status, the server's error code and its message.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
TOKEN_ENV = "SHOAL_TOKEN"


class ShoalError(RuntimeError):
    """The server answered with an error: `status` (HTTP), `code` (e.g. not_found) and its message."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def _headers(token: str | None) -> dict[str, str]:
    token = token if token is not None else os.environ.get(TOKEN_ENV)
    return {"Authorization": f"Bearer {token}"} if token else {}


def _path(model: str, suffix: str = "") -> str:
    return f"/v1/models/{quote(model, safe='')}{suffix}"


def _predict_body(inputs: str | list[str], top_k: int | None, return_probabilities: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": [inputs] if isinstance(inputs, str) else list(inputs)}
    if top_k is not None:
        body["top_k"] = top_k
    if return_probabilities:
        body["return_probabilities"] = True
    return body


def _pipeline_path(name: str) -> str:
    return f"/v1/pipelines/{quote(name, safe='')}/predict"


def _inputs(inputs: Any) -> dict[str, Any]:
    return {"inputs": [inputs] if isinstance(inputs, str | dict) else list(inputs)}


def _result(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "error", response.text[:500] or response.reason_phrase
    retry = response.headers.get("Retry-After")
    raise ShoalError(response.status_code, code, message, float(retry) if retry and retry.isdigit() else None)


class Client:
    """A blocking client. The token defaults to $SHOAL_TOKEN; use it as a context manager or `close()` it."""

    def __init__(self, url: str = DEFAULT_URL, *, token: str | None = None, timeout: float = 10.0) -> None:
        self._http = httpx.Client(base_url=url, headers=_headers(token), timeout=timeout)

    def predict(
        self, model: str, inputs: str | list[str], top_k: int | None = None, return_probabilities: bool = False
    ) -> dict[str, Any]:
        """Predictions of `model`'s production version for one text or a list of texts."""
        body = _predict_body(inputs, top_k, return_probabilities)
        return _result(self._http.post(_path(model, "/predict"), json=body))  # type: ignore[no-any-return]

    def predict_pipeline(self, pipeline: str, inputs: str | dict[str, Any] | list[Any]) -> dict[str, Any]:
        """Every step's answer (with the version that answered), skipped step and stop for one input or a list."""
        return _result(self._http.post(_pipeline_path(pipeline), json=_inputs(inputs)))  # type: ignore[no-any-return]

    def models(self) -> list[dict[str, Any]]:
        """Every served model with its production version and key metrics."""
        return _result(self._http.get("/v1/models"))["models"]  # type: ignore[no-any-return]

    def model(self, name: str) -> dict[str, Any]:
        """One model's versions, gate history and load/swap status."""
        return _result(self._http.get(_path(name)))  # type: ignore[no-any-return]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class AsyncClient:
    """The asyncio twin of `Client`; use it with `async with` or `await aclose()`."""

    def __init__(self, url: str = DEFAULT_URL, *, token: str | None = None, timeout: float = 10.0) -> None:
        self._http = httpx.AsyncClient(base_url=url, headers=_headers(token), timeout=timeout)

    async def predict(
        self, model: str, inputs: str | list[str], top_k: int | None = None, return_probabilities: bool = False
    ) -> dict[str, Any]:
        """Predictions of `model`'s production version for one text or a list of texts."""
        body = _predict_body(inputs, top_k, return_probabilities)
        return _result(await self._http.post(_path(model, "/predict"), json=body))  # type: ignore[no-any-return]

    async def predict_pipeline(self, pipeline: str, inputs: str | dict[str, Any] | list[Any]) -> dict[str, Any]:
        """Every step's answer (with the version that answered), skipped step and stop for one input or a list."""
        body = _inputs(inputs)
        return _result(await self._http.post(_pipeline_path(pipeline), json=body))  # type: ignore[no-any-return]

    async def models(self) -> list[dict[str, Any]]:
        """Every served model with its production version and key metrics."""
        return _result(await self._http.get("/v1/models"))["models"]  # type: ignore[no-any-return]

    async def model(self, name: str) -> dict[str, Any]:
        """One model's versions, gate history and load/swap status."""
        return _result(await self._http.get(_path(name)))  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()
