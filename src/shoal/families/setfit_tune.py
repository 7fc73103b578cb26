"""SetFit's contrastive step for the `setfit` family: fine-tune the all-MiniLM-L6-v2 body on sentence pairs, then
export the tuned body to ONNX. Training-time only (imports torch at module level; `setfit.py` imports this module
inside `fit`).

Pairs: `pairs_per_example` per training row, alternating a positive partner (same label, target cosine 1) and a
negative one (another label, target cosine 0); rows with no possible partner of a kind get none. The body is trained
with SetFit's CosineSimilarityLoss (MSE between the cosine of the mean-pooled embeddings and the target), AdamW and a
linear warm-up/decay schedule over one epoch of pairs, stopping early when `time_budget_s` is spent. Unlike SetFit,
the word-embedding table stays frozen (`torch_body.load_body`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shoal.families.torch_body import (
    MeanPooled,
    TuneReport,
    embed,
    export,
    load_body,
    run_steps,
    token_ids,
    torch_threads,
)


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


def _tune(model: MeanPooled, texts: list[str], pairs: np.ndarray, settings: TuneSettings) -> TuneReport:
    ids, pad_id = token_ids(texts, settings.max_tokens)

    def step_loss(step: int) -> torch.Tensor:
        chunk = pairs[step * settings.batch_size : (step + 1) * settings.batch_size]
        rows = np.concatenate([chunk[:, 0], chunk[:, 1]]).astype(int)
        left, right = embed(model, ids, rows, pad_id).split(len(chunk))
        cosine = torch.nn.functional.cosine_similarity(left, right)
        return torch.nn.functional.mse_loss(cosine, torch.tensor(chunk[:, 2], dtype=cosine.dtype))

    model.train()
    trained = [p for p in model.parameters() if p.requires_grad]
    planned = -(-len(pairs) // settings.batch_size)
    groups = [{"params": trained, "lr": settings.learning_rate}]
    return run_steps(groups, step_loss, planned, settings.max_steps, settings.time_budget_s, len(pairs))


def tuned_body(
    texts: Sequence[str], targets: Sequence[str], settings: TuneSettings, seed: int
) -> tuple[MeanPooled, TuneReport]:
    """The bundled MiniLM body fine-tuned contrastively on (texts, targets), with `settings.threads` torch threads."""
    with torch_threads(settings.threads):
        torch.manual_seed(seed)
        model = load_body(trainable=True)
        report = _tune(model, list(texts), make_pairs(targets, settings.pairs_per_example, seed), settings)
    return model, report


def tune_and_export(
    texts: Sequence[str], targets: Sequence[str], settings: TuneSettings, seed: int, path: Path
) -> TuneReport:
    """Fine-tune the bundled MiniLM body on (texts, targets) and write the tuned encoder to `path`."""
    model, report = tuned_body(texts, targets, settings, seed)
    export(model, path)
    return report
