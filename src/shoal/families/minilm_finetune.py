"""`minilm-finetune`: all-MiniLM-L6-v2 fine-tuned end to end with a linear head on the labelled data
(`finetune_tune.py`), for models with thousands of examples, where it beats frozen embeddings; `setfit` is the
few-shot counterpart. The body is exported to ONNX; the artifact is the `minilm-logreg` layout (encoder.onnx,
tokenizer.json, head `.npy` arrays) plus `tuning.json`, so loading and predicting use ONNX Runtime + `tokenizers`
only, never torch.

Cost: every `fit` tunes a fresh body for `epochs` passes (bounded by `time_budget_s`), so a 3-fold search + final fit
costs about three full fits. Given a seed, batches, initialisation and dropout are fixed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from shoal.families import register
from shoal.families.base import Family, Params
from shoal.families.embedding_family import TunedPredictor
from shoal.families.minilm_source import TOKENIZER_FILE, source_dir
from shoal.families.onnx_encoder import MODEL_FILE, OnnxEncoder

#: the one setting searched (the knobs of `finetune_tune.FineTuneSettings`)
DEFAULTS: Params = {"epochs": 3.0, "time_budget_s": 1800.0}


@register
class MiniLMFineTune(Family):
    name = "minilm-finetune"
    task = "text-classification"
    cost = 500.0
    #: the MiniLM fp32 encoder at batch 1, as `setfit`; the artifact is 91 MB
    expected_p95_ms = 30.0
    expected_size_mb = 95.0
    #: ~14 s per 1k rows per epoch on 2 cores (TweetEval emotion: 3,583 tweets in 50 s), 3 epochs, and a 3-fold
    #: search + final fit costs ~3 fits
    expected_train_seconds_per_1k_rows = 130.0

    def grid(self, n_rows: int) -> list[Params]:
        return [dict(DEFAULTS)]

    def fit(self, inputs: Sequence[str], targets: Sequence[str], params: Params, seed: int) -> TunedPredictor:
        from shoal.families.finetune_tune import FineTuneSettings, finetune_and_export

        params = {**DEFAULTS, **params}
        scratch = tempfile.TemporaryDirectory(prefix="shoal-finetune-")
        model_path = Path(scratch.name) / MODEL_FILE
        head, report = finetune_and_export(inputs, targets, FineTuneSettings.from_params(params), seed, model_path)
        encoder = OnnxEncoder(model_path, source_dir() / TOKENIZER_FILE)
        training = {"params": params, "seed": seed, "rows": len(inputs), **report.to_dict()}
        return TunedPredictor(encoder, head, training, scratch)

    def load(self, folder: Path) -> TunedPredictor:
        return TunedPredictor.load(OnnxEncoder.load(folder), folder)
