"""Supervised fine-tuning for the `minilm-finetune` family: the all-MiniLM-L6-v2 body and a linear head trained
together with cross-entropy, then the body exported to ONNX. Training-time only (imports torch at module level;
`minilm_finetune.py` imports this module inside `fit`).

The head is a cosine classifier: it sees the unit-length embedding times `SCALE`, i.e. exactly the normalized vector
`OnnxEncoder` serves, so the served `LinearHead` is the trained one with its weights multiplied by `SCALE` and the
prediction needs no refit. The body (word-embedding table frozen, `torch_body.load_body`) and the head learn at their
own rates under one linear warm-up/decay schedule over `epochs` passes of shuffled batches, stopping early when
`time_budget_s` is spent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shoal.families.runtime import torch_body
from shoal.families.runtime.linear_head import LinearHead

#: logit scale of the cosine head (unit vectors times SCALE before the linear layer)
SCALE = 20.0


@dataclass(frozen=True)
class FineTuneSettings(torch_body.TuningSettings):
    """`TuningSettings` with this family's defaults (every core: its fits are long), + epochs and the head's rate."""

    time_budget_s: float = 1800.0
    batch_size: int = 32
    learning_rate: float = 5e-5
    #: torch's default: every core alone, one per job in a parallel CV search (joblib sets OMP_NUM_THREADS=1 in its
    #: workers), so parallel folds do not oversubscribe the cores
    threads: int = 0
    epochs: float = 3.0
    head_learning_rate: float = 1e-3


def _batches(n_rows: int, settings: FineTuneSettings, seed: int) -> list[np.ndarray]:
    """Row indices of every planned step: each epoch a fresh permutation cut into batches."""
    rng = np.random.default_rng(seed)
    size, batches = settings.batch_size, []
    for _ in range(math.ceil(settings.epochs)):
        perm = rng.permutation(n_rows)
        batches.extend(perm[i : i + size] for i in range(0, n_rows, size))
    return batches[: math.ceil(settings.epochs * math.ceil(n_rows / size))]


@dataclass
class FineTuned:
    """A tuned body and its cosine head (torch), the head's labels and how the tuning went."""

    body: torch_body.MeanPooled
    head: torch.nn.Linear
    labels: list[str]
    report: torch_body.TuneReport

    def served_head(self) -> LinearHead:
        """The head as it applies to the served, normalized embeddings: `softmax(unit @ (SCALE * W).T + b)`."""
        weights, bias = self.head.weight.detach().numpy() * SCALE, self.head.bias.detach().numpy()
        return LinearHead(weights, bias, self.labels)

    def predict_proba(self, texts: Sequence[str], max_tokens: int = 256) -> np.ndarray:
        """Class probabilities from torch (the reference the exported encoder + served head must reproduce)."""
        ids, pad_id = torch_body.token_ids(texts, max_tokens)
        self.body.eval()
        with torch.no_grad():
            unit = torch.nn.functional.normalize(torch_body.embed(self.body, ids, np.arange(len(ids)), pad_id))
            return torch.softmax(self.head(unit * SCALE), dim=1).numpy()


def finetune(texts: Sequence[str], targets: Sequence[str], settings: FineTuneSettings, seed: int) -> FineTuned:
    """The bundled MiniLM body + a cosine head fine-tuned on (texts, targets)."""
    labels = sorted({str(target) for target in targets})
    codes = torch.tensor([labels.index(str(target)) for target in targets])
    with torch_body.torch_threads(settings.threads):
        torch.manual_seed(seed)
        body = torch_body.load_body(trainable=True)
        head = torch.nn.Linear(body.bert.config.hidden_size, len(labels))
        ids, pad_id = torch_body.token_ids(texts, settings.max_tokens)
        batches = _batches(len(ids), settings, seed)

        def step_loss(step: int) -> torch.Tensor:
            rows = batches[step]
            unit = torch.nn.functional.normalize(torch_body.embed(body, ids, rows, pad_id))
            return torch.nn.functional.cross_entropy(head(unit * SCALE), codes[torch.from_numpy(rows)])

        body.train()
        groups = [
            {"params": [p for p in body.parameters() if p.requires_grad], "lr": settings.learning_rate},
            {"params": list(head.parameters()), "lr": settings.head_learning_rate},
        ]
        report = torch_body.run_steps(
            groups, step_loss, len(batches), settings.max_steps, settings.time_budget_s, len(ids)
        )
    return FineTuned(body, head, labels, report)


def finetune_and_export(
    texts: Sequence[str], targets: Sequence[str], settings: FineTuneSettings, seed: int, path: Path
) -> tuple[LinearHead, torch_body.TuneReport]:
    """Fine-tune (see `finetune`), write the body to `path` as ONNX, return the served head and the report."""
    tuned = finetune(texts, targets, settings, seed)
    torch_body.export(tuned.body, path)
    return tuned.served_head(), tuned.report
