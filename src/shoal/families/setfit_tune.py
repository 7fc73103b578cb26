"""SetFit's contrastive step for the `setfit` family: fine-tune the all-MiniLM-L6-v2 body on sentence pairs, then
export the tuned body to ONNX. Training-time only (imports torch and transformers at module level; `setfit.py`
imports this module inside `fit`).

Pairs: `pairs_per_example` per training row, alternating a positive partner (same label, target cosine 1) and a
negative one (another label, target cosine 0); rows with no possible partner of a kind get none. The body is trained
with SetFit's CosineSimilarityLoss (MSE between the cosine of the mean-pooled embeddings and the target), AdamW and a
linear warm-up/decay schedule over one epoch, stopping early when `time_budget_s` is spent. Unlike SetFit, the
word-embedding table (half the weights) stays frozen: few-shot data touches a few hundred of its 30,522 rows, AdamW's
weight decay would only shrink the others, and skipping its update makes each step ~18% faster on CPU.

The exported graph is the same one `onnx_export.py` builds for the stock weights (input_ids + attention_mask ->
mean-pooled embedding, opset `OPSET`); that function only exports the bundled weights, so the export of a given
module is repeated here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import BertModel

from shoal.families.hf_tokenizer import load_tokenizer
from shoal.families.minilm_source import TOKENIZER_FILE, source_dir
from shoal.families.onnx_export import OPSET

#: learning-rate warm-up: this share of the planned steps (as sentence-transformers' WarmupLinear), capped in steps
#: because the time budget usually ends tuning long before the epoch on CPU
WARMUP, MAX_WARMUP_STEPS = 0.1, 10
#: texts per forward pass within a batch (sorted by length, so padding stays small)
SUB = 8


@dataclass(frozen=True)
class TuneSettings:
    time_budget_s: float = 120.0
    pairs_per_example: int = 20
    batch_size: int = 16
    learning_rate: float = 2e-5
    #: training-time truncation (prediction truncates at the encoder's 256 tokens); few-shot texts are short
    max_tokens: int = 64
    #: torch intra-op threads while tuning (restored afterwards); 1 keeps parallel CV fits from oversubscribing
    threads: int = 1
    #: stop after this many steps even within the budget (None: one epoch)
    max_steps: int | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TuneSettings:
        return cls(**{key: params[key] for key in cls.__dataclass_fields__ if key in params})


@dataclass(frozen=True)
class TuneReport:
    pairs: int
    planned_steps: int
    steps: int
    seconds: float
    #: "epoch", "max_steps", "time_budget" or "no_pairs"
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


def make_pairs(targets: Sequence[str], per_example: int, seed: int) -> np.ndarray:
    """Shuffled rows (left index, right index, target cosine), shape (n_pairs, 3), float64."""
    rng = np.random.default_rng(seed)
    _, codes = np.unique(np.asarray(targets, dtype=object), return_inverse=True)
    members = [np.flatnonzero(codes == c) for c in range(codes.max() + 1)] if len(codes) else []
    outsiders = [np.flatnonzero(codes != c) for c in range(len(members))]
    rows: list[tuple[int, int, float]] = []
    for i, code in enumerate(codes):
        same = members[code][members[code] != i]
        for r in range(per_example):
            pool, target = (same, 1.0) if r % 2 == 0 else (outsiders[code], 0.0)
            if pool.size:
                rows.append((i, int(rng.choice(pool)), target))
    pairs = np.array(rows, dtype=np.float64).reshape(-1, 3)
    return pairs[rng.permutation(len(pairs))]


def _padded(token_ids: list[list[int]], rows: np.ndarray, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(token_ids[i]) for i in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, i in enumerate(rows):
        ids[k, : len(token_ids[i])] = torch.tensor(token_ids[i])
        mask[k, : len(token_ids[i])] = 1
    return ids, mask


def _embed(model: MeanPooled, token_ids: list[list[int]], rows: np.ndarray, pad_id: int) -> torch.Tensor:
    """Embeddings of texts `rows`, run in length-sorted sub-batches so one long text does not pad the whole batch."""
    order = np.argsort([len(token_ids[i]) for i in rows], kind="stable")
    parts = [model(*_padded(token_ids, rows[chunk], pad_id)) for chunk in np.array_split(order, -(-len(rows) // SUB))]
    return torch.cat(parts)[torch.from_numpy(np.argsort(order, kind="stable"))]


def _tune(model: MeanPooled, texts: list[str], pairs: np.ndarray, settings: TuneSettings) -> TuneReport:
    started = time.perf_counter()
    tokenizer = load_tokenizer(source_dir() / TOKENIZER_FILE, settings.max_tokens, pad=False)
    token_ids = [encoding.ids for encoding in tokenizer.encode_batch(texts)]
    pad_id = tokenizer.token_to_id("[PAD]")
    planned = -(-len(pairs) // settings.batch_size)
    limit = planned if settings.max_steps is None else min(planned, settings.max_steps)
    warmup = max(1, min(MAX_WARMUP_STEPS, round(WARMUP * planned)))
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=settings.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (planned - step) / max(1, planned - warmup)))
    )
    model.train()
    steps, stopped_by = 0, "no_pairs" if planned == 0 else "epoch"
    while steps < limit:
        if time.perf_counter() - started >= settings.time_budget_s:
            stopped_by = "time_budget"
            break
        chunk = pairs[steps * settings.batch_size : (steps + 1) * settings.batch_size]
        left, right = _embed(model, token_ids, np.concatenate([chunk[:, 0], chunk[:, 1]]).astype(int), pad_id).split(
            len(chunk)
        )
        cosine = torch.nn.functional.cosine_similarity(left, right)
        loss = torch.nn.functional.mse_loss(cosine, torch.tensor(chunk[:, 2], dtype=cosine.dtype))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        steps += 1
    if stopped_by == "epoch" and steps < planned:
        stopped_by = "max_steps"
    return TuneReport(len(pairs), planned, steps, round(time.perf_counter() - started, 2), stopped_by)


def _export(model: MeanPooled, path: Path) -> None:
    model.eval()
    example = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])
    with torch.no_grad():
        torch.onnx.export(
            model,
            (example, (example > 0).long()),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}},
            opset_version=OPSET,
            dynamo=False,
        )


def tuned_body(
    texts: Sequence[str], targets: Sequence[str], settings: TuneSettings, seed: int
) -> tuple[MeanPooled, TuneReport]:
    """The bundled MiniLM body fine-tuned contrastively on (texts, targets), with `settings.threads` torch threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        torch.manual_seed(seed)
        bert = BertModel.from_pretrained(str(source_dir()), attn_implementation="sdpa", local_files_only=True)
        bert.embeddings.word_embeddings.weight.requires_grad_(False)
        model = MeanPooled(bert)
        report = _tune(model, list(texts), make_pairs(targets, settings.pairs_per_example, seed), settings)
    finally:
        torch.set_num_threads(threads)
    return model, report


def tune_and_export(
    texts: Sequence[str], targets: Sequence[str], settings: TuneSettings, seed: int, path: Path
) -> TuneReport:
    """Fine-tune the bundled MiniLM body on (texts, targets) and write the tuned encoder to `path`."""
    model, report = tuned_body(texts, targets, settings, seed)
    model.bert.set_attn_implementation("eager")  # sdpa trains ~30% faster on CPU; the export uses eager (onnx_export)
    _export(model, path)
    return report
