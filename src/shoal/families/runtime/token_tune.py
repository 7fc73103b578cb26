"""Fine-tuning for the `minilm-tagger` family: the all-MiniLM-L6-v2 body, a case embedding (`word_pieces.CASES`) and
a linear layer over each sub-token's output, trained with cross-entropy on each word's first sub-token (BIO tags of
the shared tokenizer's words); then exported to ONNX (input_ids, attention_mask, case_ids -> per sub-token logits).
Training-time only (imports torch at module level; the family imports this module inside `fit`).

Epochs of shuffled batches (of sentences of similar lengths) under one linear warm-up/decay schedule; with enough
sentences a seeded `held_out` share of them is kept aside, the held-out entity F1 is measured after each epoch, the
best epoch's weights are kept and training stops after `patience` epochs without gain (or when `time_budget_s` is
spent).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shoal.evaluate.entities import counts
from shoal.families.runtime import torch_body
from shoal.families.runtime.hf_tokenizer import load_tokenizer
from shoal.families.runtime.minilm_source import TOKENIZER_FILE, source_dir
from shoal.families.runtime.tokens import spans_of
from shoal.families.runtime.word_pieces import CASES, Pieces, batch, pieces, word_tags

#: dimensions of the case embedding
CASE_DIMS = 16
#: below this many sentences nothing is held out (every epoch runs)
MIN_HELD_OUT = 50
IGNORE = -100
#: batches whose rows are sorted by length together (less padding)
BUCKET = 20
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaggerSettings(torch_body.TuningSettings):
    """`TuningSettings` with this family's defaults, + epochs, the head's rate and early stopping."""

    time_budget_s: float = 1800.0
    batch_size: int = 16
    learning_rate: float = 8e-5
    head_learning_rate: float = 1e-3
    max_tokens: int = 128
    threads: int = 0
    epochs: int = 6
    patience: int = 2
    held_out: float = 0.1


class Tagger(torch.nn.Module):
    """BERT body; each sub-token's output and its case embedding -> tag logits."""

    def __init__(self, bert: Any, n_tags: int) -> None:
        super().__init__()
        self.bert = bert
        self.case = torch.nn.Embedding(len(CASES), CASE_DIMS)
        self.dropout = torch.nn.Dropout(0.1)
        self.head = torch.nn.Linear(bert.config.hidden_size + CASE_DIMS, n_tags)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, case_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
        ).last_hidden_state
        return self.head(self.dropout(torch.cat([hidden, self.case(case_ids)], dim=-1)))


@dataclass(frozen=True)
class TaggerReport:
    """How a tuning went (stored with the model)."""

    examples: int
    held_out: int
    epochs: int
    best_epoch: int
    held_out_f1: list[float]
    seconds: float
    #: "planned", "patience", "time_budget" or "no_examples"
    stopped_by: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _batches(rows: np.ndarray, encoded: Sequence[Pieces], size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """An epoch's batches of `rows`: shuffled, each run of `BUCKET` batches' rows sorted by length and cut (so a batch
    pads little), then the batches shuffled."""
    perm, out = rng.permutation(rows), []
    for start in range(0, len(perm), size * BUCKET):
        run = perm[start : start + size * BUCKET]
        run = run[np.argsort([len(encoded[i].ids) for i in run], kind="stable")]
        out += [run[i : i + size] for i in range(0, len(run), size)]
    return [out[i] for i in rng.permutation(len(out))]


def _feed(sentences: Sequence[Pieces], pad_id: int) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(value) for key, value in batch(sentences, pad_id).items()}


def _targets(sentences: Sequence[Pieces], codes: Sequence[list[int]], width: int) -> torch.Tensor:
    out = torch.full((len(sentences), width), IGNORE, dtype=torch.long)
    for row, (sentence, tags) in enumerate(zip(sentences, codes, strict=True)):
        for first, tag in zip(sentence.firsts, tags, strict=True):
            if first >= 0:
                out[row, first] = tag
    return out


def _held_out_f1(
    model: Tagger, sentences: list[Pieces], tokens: list[list[tuple[int, int]]], gold: list[list[str]], names: list[str]
) -> float:
    model.eval()
    truth, found = [], []
    with torch.no_grad():
        for start in range(0, len(sentences), 32):
            part = sentences[start : start + 32]
            logits = model(**_feed(part, 0)).numpy()
            for k, sentence in enumerate(part):
                i = start + k
                predicted, _ = word_tags(logits[k, : len(sentence.ids)], sentence, names)
                found.append([s[:3] for s in spans_of(tokens[i], predicted)])
                truth.append([s[:3] for s in spans_of(tokens[i], gold[i])])
    tp, predicted_n, gold_n = counts(truth, found).sum(axis=0)
    return float(2 * tp / (predicted_n + gold_n)) if predicted_n + gold_n else 0.0


def tune(
    words: Sequence[list[str]],
    tokens: Sequence[list[tuple[int, int]]],
    gold: Sequence[list[str]],
    names: list[str],
    settings: TaggerSettings,
    seed: int,
) -> tuple[Tagger, TaggerReport]:
    """The tagger trained on sentences (`words`, their offsets `tokens` and BIO tags `gold`), tags `names`."""
    started = time.perf_counter()
    tokenizer = load_tokenizer(source_dir() / TOKENIZER_FILE, settings.max_tokens)
    pad_id = tokenizer.token_to_id("[PAD]")
    encoded = pieces(tokenizer, words)
    index = {name: i for i, name in enumerate(names)}
    codes = [[index[tag] for tag in tags] for tags in gold]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(encoded))
    n_held = int(len(encoded) * settings.held_out) if len(encoded) >= MIN_HELD_OUT else 0
    held, train = order[:n_held], order[n_held:]
    per_epoch = math.ceil(len(train) / settings.batch_size)
    planned = settings.epochs * per_epoch
    warmup = max(1, round(0.1 * planned))
    with torch_body.torch_threads(settings.threads):
        torch.manual_seed(seed)
        model = Tagger(torch_body.load_body(trainable=True).bert, len(names))
        groups = [
            {"params": [p for p in model.bert.parameters() if p.requires_grad], "lr": settings.learning_rate},
            {"params": [*model.case.parameters(), *model.head.parameters()], "lr": settings.head_learning_rate},
        ]
        optimizer = torch.optim.AdamW(groups)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min((step + 1) / warmup, max(0.0, (planned - step) / max(1, planned - warmup)))
        )
        scores: list[float] = []
        best_state, best_epoch, stopped_by = None, 0, "no_examples" if not len(train) else "planned"
        epochs = 0
        for epoch in range(settings.epochs if len(train) else 0):
            model.train()
            for rows in _batches(train, encoded, settings.batch_size, rng):
                if time.perf_counter() - started >= settings.time_budget_s:
                    stopped_by = "time_budget"
                    break
                part = [encoded[i] for i in rows]
                feed = _feed(part, pad_id)
                target = _targets(part, [codes[i] for i in rows], feed["input_ids"].shape[1])
                logits = model(**feed)
                loss = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, len(names)), target.reshape(-1), ignore_index=IGNORE
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
            epochs = epoch + 1
            if n_held:
                held_pieces = [encoded[i] for i in held]
                held_tokens, held_gold = [list(tokens[i]) for i in held], [list(gold[i]) for i in held]
                scores.append(round(_held_out_f1(model, held_pieces, held_tokens, held_gold, names), 4))
                log.info("epoch %d: held-out F1 %.4f (%.0f s)", epochs, scores[-1], time.perf_counter() - started)
                if scores[-1] >= max(scores):
                    best_state, best_epoch = copy.deepcopy(model.state_dict()), epochs
                elif epochs - best_epoch >= settings.patience:
                    stopped_by = "patience"
                    break
            else:
                best_epoch = epochs
            if stopped_by == "time_budget":
                break
        if best_state is not None:
            model.load_state_dict(best_state)
    model.eval()
    report = TaggerReport(
        len(train), n_held, epochs, best_epoch, scores, round(time.perf_counter() - started, 2), stopped_by
    )
    return model, report


def export(model: Tagger, path: Path) -> None:
    """Write `model` as an ONNX graph (input_ids, attention_mask, case_ids -> logits per sub-token) to `path`."""
    torch_body.export_encoder(model, path, "logits", extra=("case_ids",))
