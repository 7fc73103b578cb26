"""The prompt of a classification by an LLM, and its answer constrained to the labels.

The instruction (the endpoint's or the model's `prompt`, else `DEFAULT_PROMPT`) is the system message, with
`{labels}` replaced by the labels; the input is the user message, alone. The answer is asked for as
`{"label": ...}`, constrained by the server as strongly as it allows (`OUTPUTS`, strongest first):

- `json_schema`: OpenAI's `response_format` with a JSON schema whose `label` is an enum of the labels;
- `grammar`: a GBNF grammar (llama.cpp's `grammar` field) that admits exactly `{"label": <one of the labels>}`, for
  llama.cpp-based servers without `json_schema`;
- `json_object`: JSON mode, the labels only in the instruction;
- `text`: no constraint; the answer must be `{"label": ...}` or exactly one label (surrounding blanks aside).

Whatever the server promised, `parse` checks the answer: anything but one of the labels raises `LLMAnswerInvalid`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from shoal.llm.errors import LLMAnswerInvalid

DEFAULT_PROMPT = (
    "You classify texts. Answer with the one label among {labels} that fits the user's text best, as JSON: "
    '{"label": "<the label>"}. Answer nothing else.'
)


class Asking(Protocol):
    """What the client asks with: a classification `Prompt`, or another request whose answer is parsed into one
    string (`shoal.llm.synth.ExamplesPrompt`: new examples of a label). `hash` keys the response cache."""

    @property
    def hash(self) -> str: ...

    @property
    def max_tokens(self) -> int: ...

    def messages(self, text: str) -> list[dict[str, str]]: ...

    def constraint(self, output: str) -> dict[str, Any]: ...

    def parse(self, content: Any) -> str: ...


@dataclass(frozen=True)
class Prompt:
    """A classification prompt over `labels`."""

    instruction: str
    labels: tuple[str, ...]

    @cached_property
    def system(self) -> str:
        listed = ", ".join(json.dumps(label, ensure_ascii=False) for label in self.labels)
        if "{labels}" in self.instruction:
            return self.instruction.replace("{labels}", listed)
        return f"{self.instruction}\nThe labels: {listed}."

    @cached_property
    def hash(self) -> str:
        """What identifies the prompt in the response cache: its system message and labels."""
        return hashlib.sha256(json.dumps([self.system, self.labels]).encode()).hexdigest()

    @property
    def max_tokens(self) -> int:
        """Room for `{"label": "<the longest label>"}` and some blanks: a token is at least a character."""
        return max(len(label) for label in self.labels) + 32

    def messages(self, text: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": text}]

    def constraint(self, output: str) -> dict[str, Any]:
        """The request fields that constrain the answer for `output` (none for `text`: the answer is parsed)."""
        label = {"type": "string", "enum": list(self.labels)}
        return constraint_fields(output, "label", {"label": label}, self.grammar)

    @cached_property
    def grammar(self) -> str:
        """A GBNF grammar whose only sentences are `{"label": <a label as a JSON string>}`."""
        choices = " | ".join(_gbnf(json.dumps(label, ensure_ascii=False)) for label in self.labels)
        return f'root ::= "{{\\"label\\": " ( {choices} ) "}}"\n'

    def parse(self, content: Any) -> str:
        """The label an answer's content names; `LLMAnswerInvalid` for anything else (the answer is not quoted:
        it may repeat the user's text)."""
        if not isinstance(content, str):
            raise LLMAnswerInvalid("the answer has no text content")
        stripped = content.strip()
        if stripped in self.labels:
            return stripped
        try:
            answer = json.loads(stripped)
        except ValueError:
            raise LLMAnswerInvalid("the answer is neither JSON nor one of the labels") from None
        label = answer.get("label") if isinstance(answer, dict) else None
        if not isinstance(label, str) or label not in self.labels:
            raise LLMAnswerInvalid("the answer names no label of the set")
        return label


def constraint_fields(output: str, name: str, properties: dict[str, Any], grammar: str) -> dict[str, Any]:
    """The request fields that hold an answer to a JSON object of `properties` (all required) as strongly as
    `output` allows: OpenAI's `json_schema` response format, llama.cpp's `grammar`, JSON mode, or none (`text`)."""
    if output == "json_schema":
        required = list(properties)
        schema = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
        named = {"name": name, "strict": True, "schema": schema}
        return {"response_format": {"type": "json_schema", "json_schema": named}}
    if output == "grammar":
        return {"grammar": grammar}
    if output == "json_object":
        return {"response_format": {"type": "json_object"}}
    return {}


def _gbnf(text: str) -> str:
    """`text` as a GBNF string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')  # JSON has escaped every control character
    return f'"{escaped}"'
