"""An LLM endpoint as a cascade's fallback: each deferred input is classified by the endpoint over the small model's
labels, and answers one-hot (an LLM's label has no calibrated probability).

Each input's tier says how it ended: `fallback` (a label of the set), `small-capped` (the endpoint's daily spend cap
is reached) or `small-fallback-down` (the endpoint did not answer, or not with a label of the set: counted as
`invalid`, never used).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shoal.cascade.fallback import Deferred, Fallback
from shoal.llm.client import Answer, LLMClient
from shoal.llm.errors import LLMAnswerInvalid, SpendCapReached
from shoal.llm.prompt import DEFAULT_PROMPT, Prompt


class LLMFallback(Fallback):
    def __init__(self, client: LLMClient, instruction: str | None = None) -> None:
        self.client = client
        self.name = f"llm:{client.name}"
        self.instruction = instruction or client.spec.prompt or DEFAULT_PROMPT
        self._prompts: dict[tuple[str, ...], Prompt] = {}

    def cost_per_input(self) -> float:
        return self.client.expected_cost(self.instruction)

    async def predict(self, inputs: list[Any], labels: list[str]) -> Deferred:
        key = tuple(labels)
        prompt = self._prompts.get(key) or self._prompts.setdefault(key, Prompt(self.instruction, key))
        results = await self.client.classify(inputs, prompt)
        columns = {label: i for i, label in enumerate(labels)}
        proba = np.zeros((len(inputs), len(labels)))
        tiers, dollars, problem = [], 0.0, None
        for row, result in enumerate(results):
            if isinstance(result, Answer):
                proba[row, columns[result.label]] = 1.0
                tiers.append("fallback")
                dollars += result.dollars
            elif isinstance(result, SpendCapReached):
                tiers.append("small-capped")
            else:
                tiers.append("small-fallback-down")
                if not isinstance(result, LLMAnswerInvalid):
                    problem = problem or str(result)
        answered = tiers.count("fallback")
        return Deferred(proba, self.client.spec.model, dollars / answered if answered else 0.0, tiers, problem)
