"""The all-MiniLM-L6-v2 body in torch, for the families that fine-tune it (`setfit`, `minilm-finetune`) and for the
ONNX export of the stock weights. Training-time only: imports torch and transformers at module level, so only
`fit` paths import this module; loading and predicting never do.

The exported graph takes `input_ids` and `attention_mask` and returns the mean-pooled (not yet normalized) sentence
embedding, exactly what sentence-transformers computes before its Normalize module; `OnnxEncoder` normalizes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from transformers import BertModel

from shoal.families.runtime.hf_tokenizer import load_tokenizer, pad_batch
from shoal.families.runtime.minilm_source import TOKENIZER_FILE, source_dir

OPSET = 17
#: texts per forward pass within a batch (sorted by length, so padding stays small)
SUB = 8
#: learning-rate warm-up: this share of the planned steps (as sentence-transformers' WarmupLinear), capped in steps
#: because a time budget often ends tuning long before the planned steps on CPU
WARMUP, MAX_WARMUP_STEPS = 0.1, 10


@dataclass(frozen=True)
class TuningSettings:
    """Knobs every fine-tuning family shares; each family's settings subclass this with its own defaults."""

    time_budget_s: float = 120.0
    batch_size: int = 16
    learning_rate: float = 2e-5
    #: training-time truncation (prediction truncates at the encoder's 256 tokens)
    max_tokens: int = 64
    #: torch intra-op threads while tuning (restored afterwards); 0 leaves torch's default (every core)
    threads: int = 1
    #: stop after this many steps even within the budget (None: all planned steps)
    max_steps: int | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Self:
        return cls(**{key: params[key] for key in cls.__dataclass_fields__ if key in params})


@dataclass(frozen=True)
class TuneReport:
    """How a fine-tuning run went (stored with the model)."""

    examples: int
    planned_steps: int
    steps: int
    seconds: float
    #: "planned" (all planned steps), "max_steps", "time_budget" or "no_examples"
    stopped_by: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class MeanPooled(torch.nn.Module):
    """BERT body + attention-masked mean pooling (sentence-transformers' Pooling, before Normalize)."""

    def __init__(self, bert: BertModel) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        tokens = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        return (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def load_body(trainable: bool) -> MeanPooled:
    """The bundled weights. Trainable bodies use sdpa attention (~30% faster to train on CPU) and keep the
    word-embedding table (half the weights) frozen: a task's data touches a small share of its 30,522 rows, AdamW's
    weight decay would only shrink the others, and skipping its update makes each step ~18% faster on CPU."""
    attention = "sdpa" if trainable else "eager"
    bert = BertModel.from_pretrained(str(source_dir()), attn_implementation=attention, local_files_only=True)
    bert.embeddings.word_embeddings.weight.requires_grad_(False)
    return MeanPooled(bert)


def token_ids(texts: Sequence[str], max_tokens: int) -> tuple[list[list[int]], int]:
    """WordPiece ids of each text, unpadded and truncated to `max_tokens`, and the padding id."""
    tokenizer = load_tokenizer(source_dir() / TOKENIZER_FILE, max_tokens)
    return [encoding.ids for encoding in tokenizer.encode_batch(list(texts))], tokenizer.token_to_id("[PAD]")


def _padded(ids: list[list[int]], rows: np.ndarray, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    out, mask = pad_batch([ids[i] for i in rows], pad_id)
    return torch.from_numpy(out), torch.from_numpy(mask)


def embed(model: MeanPooled, ids: list[list[int]], rows: np.ndarray, pad_id: int) -> torch.Tensor:
    """Embeddings of texts `rows`, run in length-sorted sub-batches so one long text does not pad the whole batch."""
    order = np.argsort([len(ids[i]) for i in rows], kind="stable")
    parts = [model(*_padded(ids, rows[chunk], pad_id)) for chunk in np.array_split(order, -(-len(rows) // SUB))]
    return torch.cat(parts)[torch.from_numpy(np.argsort(order, kind="stable"))]


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to `threads` (0: leave torch's default) for the block, then restored."""
    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def export(model: MeanPooled, path: Path) -> None:
    """Write `model` as an ONNX graph (input_ids + attention_mask -> mean-pooled embedding) to `path`."""
    export_encoder(model, path, "embedding")


def export_encoder(model: torch.nn.Module, path: Path, output: str, extra: tuple[str, ...] = ()) -> None:
    """Write a model with a BERT body (`model.bert`) as an ONNX graph to `path`: input_ids, attention_mask and the
    `extra` id inputs (each batch × tokens) -> `output`, exported from eager attention."""
    model.bert.set_attn_implementation("eager")  # type: ignore[union-attr,operator]
    model.eval()
    example = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])
    names = ("input_ids", "attention_mask", *extra)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (example, (example > 0).long(), *(torch.ones_like(example) for _ in extra)),
            str(path),
            input_names=list(names),
            output_names=[output],
            dynamic_axes={name: {0: "batch", 1: "tokens"} for name in names},
            opset_version=OPSET,
            dynamo=False,
        )


def run_steps(
    groups: list[dict[str, Any]],
    step_loss: Callable[[int], torch.Tensor],
    planned: int,
    max_steps: int | None,
    time_budget_s: float,
    examples: int,
) -> TuneReport:
    """AdamW over parameter `groups` (each with its `lr`) with a linear warm-up/decay schedule over `planned` steps;
    step `k` minimizes `step_loss(k)`. Stops after `planned` or `max_steps` steps, or before a step once
    `time_budget_s` is spent."""
    started = time.perf_counter()
    limit = planned if max_steps is None else min(planned, max_steps)
    warmup = max(1, min(MAX_WARMUP_STEPS, round(WARMUP * planned)))
    optimizer = torch.optim.AdamW(groups)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (planned - step) / max(1, planned - warmup)))
    )
    steps, stopped_by = 0, "no_examples" if planned == 0 else "planned"
    while steps < limit:
        if time.perf_counter() - started >= time_budget_s:
            stopped_by = "time_budget"
            break
        loss = step_loss(steps)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        steps += 1
    if stopped_by == "planned" and steps < planned:
        stopped_by = "max_steps"
    return TuneReport(examples, planned, steps, round(time.perf_counter() - started, 2), stopped_by)
