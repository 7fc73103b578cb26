"""The fleet file's `llm:` section: the endpoints a fleet may call, each any OpenAI-compatible server.

llm:
  local:                                   # the endpoint's name, as a cascade names it
    base_url: http://127.0.0.1:8080/v1     # the server's OpenAI API root (where /chat/completions is)
    model: smollm2
  hosted:
    base_url: https://api.example.com/v1
    model: some-model
    api_key_env: EXAMPLE_API_KEY           # the key is read from this variable; never logged or stored
    price_in: 0.15                         # $ per million prompt tokens
    price_out: 0.60                        # $ per million completion tokens
    max_cost_per_day: 5                    # $ per UTC day, all of shoal's processes together
    max_concurrency: 8
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from shoal.fleet import _Strict

#: how an answer is constrained to the labels; `auto` starts with `json_schema` and steps down when refused
OUTPUTS = ("json_schema", "grammar", "json_object", "text")


class LLMEndpoint(_Strict):
    """One OpenAI-compatible chat completions endpoint and the limits shoal keeps with it."""

    base_url: str = Field(description="the API root: POST {base_url}/chat/completions, e.g. http://127.0.0.1:8080/v1")
    model: str = Field(min_length=1, description="the model name the server expects")
    api_key_env: str | None = Field(
        None, description="environment variable holding the API key (sent as a bearer token; never logged or stored)"
    )
    price_in: float = Field(0.0, ge=0, description="$ per million prompt tokens")
    price_out: float = Field(0.0, ge=0, description="$ per million completion tokens")
    max_cost_per_day: float | None = Field(
        None, gt=0, description="$ this endpoint may spend per UTC day (every process of the fleet together)"
    )
    max_concurrency: int = Field(4, ge=1, le=256, description="requests in flight at once, per process")
    timeout_s: float = Field(30.0, gt=0, description="one attempt's time limit")
    retries: int = Field(2, ge=0, le=10, description="attempts after the first on a timeout, 429 or 5xx")
    backoff_s: float = Field(0.5, ge=0, description="wait before the first retry, doubled for each next one")
    max_backoff_s: float = Field(
        30.0, gt=0, description="the longest wait between attempts; a longer Retry-After fails the input at once"
    )
    output: Literal["auto", "json_schema", "grammar", "json_object", "text"] = Field(
        "auto",
        description="how answers are constrained to the labels: json_schema (an enum of labels), grammar (a GBNF "
        "grammar of the labels, llama.cpp's `grammar` field), json_object (JSON mode, labels in the prompt), text "
        "(a label alone, parsed strictly); auto steps down this list when the server refuses one with a 400 or 422 "
        "that names it",
    )
    prompt: str | None = Field(
        None, description="the instruction of this endpoint's classifications ({labels} is replaced by the labels)"
    )
    temperature: float = Field(0.0, ge=0, le=2)
    seed: int | None = Field(0, description="sent to servers that take one (answers repeat at temperature 0)")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8080/v1")
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _variable(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError("must be the name of an environment variable (letters, digits and '_'), not the key")
        return value

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        """$ of a request of `tokens_in` prompt and `tokens_out` completion tokens."""
        return (tokens_in * self.price_in + tokens_out * self.price_out) / 1e6


#: the agreement with the LLM a small version needs when only the LLM's answers judge it (`ColdStartSpec`)
DEFAULT_MIN_AGREEMENT = 0.9


class ColdStartSpec(_Strict):
    """A model's `llm` key: the model starts cold, answered by an LLM endpoint until a small version is promoted;
    then the LLM answers only the inputs that version is unsure of (its cascade fallback).

    models:
      intents:
        task: text-classification
        labels: [card_lost, refund, other]     # the LLM answers one of these
        llm: {endpoint: local, min_rows: 300}
    """

    endpoint: str = Field(description="an endpoint of the fleet file's llm: section")
    prompt: str | None = Field(
        None, description="this model's instruction to the LLM ({labels} is replaced by the labels)"
    )
    min_rows: int = Field(
        200,
        ge=2,
        description="train the small families once this many labelled rows exist (the LLM's logged answers and "
        "feedback labels together); then again after each min_rows new LLM answers while the LLM still answers",
    )
    max_deferral: float = Field(
        0.2, ge=0, le=1, description="once a small version is promoted: the share of inputs it sends to the LLM"
    )
    min_agreement: float = Field(
        DEFAULT_MIN_AGREEMENT,
        gt=0,
        le=1,
        description="with no human-labelled test rows (the LLM's answers are the test set), the gate promotes a small "
        "version once it agrees with the LLM on this share of the held-out test rows (with human-labelled test "
        "rows it must beat the LLM on them)",
    )
    timeout_s: float = Field(
        10.0, gt=0, description="how long a request waits for the LLM's answers; past it the request answers 503"
    )
    cooldown_s: float = Field(
        5.0, ge=0, description="after the LLM timed out or failed, how long requests answer 503 at once"
    )
