"""`setfit`: SetFit for few-shot models. The all-MiniLM-L6-v2 body is fine-tuned contrastively on pairs of training
texts within a wall-clock budget (`setfit_tune.py`), exported to ONNX, and a logistic-regression head is fit on the
tuned embeddings of the training texts.

The artifact is the `minilm-logreg` layout (encoder.onnx, tokenizer.json, head `.npy` arrays) plus `tuning.json`
(how the tuning went); loading and predicting use ONNX Runtime + `tokenizers` only, never torch.

Cost: every `fit` tunes a fresh body, so `train/search.py` pays up to `time_budget_s` (plus ~20 s of loading, ONNX
export and embedding) once per CV fold and once more for the final fit. Given a seed, the pairs, their order, the
initialisation and dropout are fixed: two fits take identical steps, but when the budget rather than the epoch ends
tuning, the number of steps depends on the machine's speed (recorded in `tuning.json`). `setfit-int8` quantizes the
tuned body of the `setfit` fit with the same data, settings and seed (`tuned_family.py`) instead of tuning its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from shoal.families import register
from shoal.families.base import Params
from shoal.families.runtime.linear_head import LinearHead
from shoal.families.runtime.minilm_source import TOKENIZER_FILE, source_dir
from shoal.families.runtime.onnx_encoder import MODEL_FILE, OnnxEncoder
from shoal.families.tuned_family import TunedFamily


@register
class SetFit(TunedFamily):
    name = "setfit"
    cost = 300.0
    #: each fit is ~min(time budget, one epoch) + ~20 s (139 s for 770 rows at the default 120 s budget), so a 3-fold
    #: search + final fit is ~560 s almost whatever the row count; declared per 1k rows at the few-shot scale, which
    #: also keeps the trainer from choosing it for large data
    expected_train_seconds_per_1k_rows = 1000.0
    #: the head's C and the tuning knobs of `setfit_tune.TuneSettings`
    defaults: ClassVar[Params] = {"C": 10.0, "time_budget_s": 120.0, "pairs_per_example": 20}

    def tune(self, inputs: Sequence[str], targets: Sequence[str], params: Params, seed: int, folder: Path) -> dict:
        from shoal.families.runtime.setfit_tune import TuneSettings, tune_and_export

        report = tune_and_export(inputs, targets, TuneSettings.from_params(params), seed, folder / MODEL_FILE)
        encoder = OnnxEncoder(folder / MODEL_FILE, source_dir() / TOKENIZER_FILE)
        LinearHead.fit(encoder.encode(inputs), targets, params["C"], seed).save(folder)
        return report.to_dict()


@register
class SetFitInt8(SetFit):
    name = "setfit-int8"
    cost = 250.0
    expected_size_mb = 25.0
    int8 = True
    quantized_from = "setfit"
