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

import numpy as np
import torch

from shoal.families.runtime import torch_body


@dataclass(frozen=True)
class TuneSettings(torch_body.TuningSettings):
    """`TuningSettings` (1 thread keeps parallel CV fits from oversubscribing; few-shot texts are short) + pairs."""

    pairs_per_example: int = 20


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


def _tune(
    model: torch_body.MeanPooled, texts: list[str], pairs: np.ndarray, settings: TuneSettings
) -> torch_body.TuneReport:
    ids, pad_id = torch_body.token_ids(texts, settings.max_tokens)

    def step_loss(step: int) -> torch.Tensor:
        chunk = pairs[step * settings.batch_size : (step + 1) * settings.batch_size]
        rows = np.concatenate([chunk[:, 0], chunk[:, 1]]).astype(int)
        left, right = torch_body.embed(model, ids, rows, pad_id).split(len(chunk))
        cosine = torch.nn.functional.cosine_similarity(left, right)
        return torch.nn.functional.mse_loss(cosine, torch.tensor(chunk[:, 2], dtype=cosine.dtype))

    model.train()
    trained = [p for p in model.parameters() if p.requires_grad]
    planned = -(-len(pairs) // settings.batch_size)
    groups = [{"params": trained, "lr": settings.learning_rate}]
    return torch_body.run_steps(groups, step_loss, planned, settings.max_steps, settings.time_budget_s, len(pairs))


def tuned_body(
    texts: Sequence[str], targets: Sequence[str], settings: TuneSettings, seed: int
) -> tuple[torch_body.MeanPooled, torch_body.TuneReport]:
    """The bundled MiniLM body fine-tuned contrastively on (texts, targets), with `settings.threads` torch threads."""
    with torch_body.torch_threads(settings.threads):
        torch.manual_seed(seed)
        model = torch_body.load_body(trainable=True)
        report = _tune(model, list(texts), make_pairs(targets, settings.pairs_per_example, seed), settings)
    return model, report


def tune_and_export(
    texts: Sequence[str], targets: Sequence[str], settings: TuneSettings, seed: int, path: Path
) -> torch_body.TuneReport:
    """Fine-tune the bundled MiniLM body on (texts, targets) and write the tuned encoder to `path`."""
    model, report = tuned_body(texts, targets, settings, seed)
    torch_body.export(model, path)
    return report
