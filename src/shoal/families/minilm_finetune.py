"""`minilm-finetune` and `minilm-finetune-int8`: all-MiniLM-L6-v2 fine-tuned end to end with a linear head on the
labelled data (`finetune_tune.py`), for models with thousands of examples, where it beats frozen embeddings (`setfit`
is the few-shot counterpart). The body is exported to ONNX (fp32, or dynamically quantized to int8 per channel);
the artifact is the `minilm-logreg` layout (encoder.onnx, tokenizer.json, head `.npy` arrays) plus `tuning.json`, so
loading and predicting use ONNX Runtime + `tokenizers` only, never torch.

Cost: every `fit` tunes a fresh body for `epochs` passes (bounded by `time_budget_s`), so a 3-fold search + final fit
costs about three full fits. Given a seed, batches, initialisation and dropout are fixed; the int8 variant quantizes
the fp32 variant's tuned bodies (`tuned_family.py`) instead of tuning its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from shoal.families import register
from shoal.families.base import Params
from shoal.families.runtime.onnx_encoder import MODEL_FILE
from shoal.families.tuned_family import TunedFamily


@register
class MiniLMFineTune(TunedFamily):
    name = "minilm-finetune"
    cost = 500.0
    #: ~14 s per 1k rows per epoch on 2 cores (TweetEval emotion: 3,583 tweets in 50 s), 3 epochs, and a 3-fold
    #: search + final fit costs ~3 fits
    expected_train_seconds_per_1k_rows = 130.0
    #: the knobs of `finetune_tune.FineTuneSettings`
    defaults: ClassVar[Params] = {"epochs": 3.0, "time_budget_s": 1800.0}

    def tune(self, inputs: Sequence[str], targets: Sequence[str], params: Params, seed: int, folder: Path) -> dict:
        from shoal.families.runtime.finetune_tune import FineTuneSettings, finetune_and_export

        settings = FineTuneSettings.from_params(params)
        head, report = finetune_and_export(inputs, targets, settings, seed, folder / MODEL_FILE)
        head.save(folder)
        return report.to_dict()


@register
class MiniLMFineTuneInt8(MiniLMFineTune):
    name = "minilm-finetune-int8"
    cost = 400.0
    expected_size_mb = 25.0
    int8 = True
    quantized_from = "minilm-finetune"
