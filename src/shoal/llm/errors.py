"""What an LLM call can end with instead of a label. Messages name the endpoint, never a key or a user's text."""

from __future__ import annotations


class LLMError(Exception):
    """An input the endpoint did not answer with a label."""

    #: the outcome it is counted as (`shoal_llm_requests_total{outcome}`)
    outcome = "error"


class LLMUnavailable(LLMError):
    """The endpoint did not answer: unreachable, timed out, refused the request or failed, after the retries."""


class LLMAnswerInvalid(LLMError):
    """The endpoint answered, but not with one of the labels (or not in the form asked for)."""

    outcome = "invalid"


class SpendCapReached(LLMError):
    """The endpoint's `max_cost_per_day` is spent for this UTC day: nothing more is sent until the next."""

    outcome = "capped"
