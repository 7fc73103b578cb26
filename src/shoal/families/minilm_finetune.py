"""`minilm-finetune` and `minilm-finetune-int8`: all-MiniLM-L6-v2 fine-tuned end to end with a linear head on the
labelled data (`finetune_tune.py`), for models with thousands of examples, where it beats frozen embeddings (`setfit`
is the few-shot counterpart). The body is exported to ONNX (fp32, or dynamically quantized to int8 per channel);
the artifact is the `minilm-logreg` layout (encoder.onnx, tokenizer.json, head `.npy` arrays) plus `tuning.json`, so
loading and predicting use ONNX Runtime + `tokenizers` only, never torch.

Cost: every `fit` tunes a fresh body for `epochs` passes (bounded by `time_budget_s`), so a 3-fold search + final fit
costs about three full fits. Given a seed, batches, initialisation and dropout are fixed, so a tuned body is cached
on disk by (texts, labels, settings, seed, weights): the int8 variant, fit on the same folds, quantizes the fp32
variant's bodies instead of tuning its own (whichever runs first pays).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from shoal.families import register
from shoal.families.base import Family, Params, read_json, write_json
from shoal.families.embedding_family import TunedPredictor
from shoal.families.linear_head import LinearHead
from shoal.families.minilm_source import TOKENIZER_FILE, cache_dir, source_dir, weights_hash
from shoal.families.onnx_encoder import MODEL_FILE, OnnxEncoder

#: the one setting searched (the knobs of `finetune_tune.FineTuneSettings`)
DEFAULTS: Params = {"epochs": 3.0, "time_budget_s": 1800.0}
#: tuned bodies kept in the cache (~90 MB each), least recently used dropped first
KEEP_TUNED = 8


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # evicted by another process meanwhile
        return 0.0


def _tuned(inputs: Sequence[str], targets: Sequence[str], params: Params, seed: int) -> Path:
    """Folder with the tuned body (encoder.onnx), its served head and `tuning.json`: from the cache, or tuned now."""
    from shoal.families.finetune_tune import FineTuneSettings, finetune_and_export

    key = json.dumps([list(inputs), [str(t) for t in targets], params, seed, weights_hash()], sort_keys=True)
    root = cache_dir() / "finetuned"
    folder = root / hashlib.sha256(key.encode()).hexdigest()[:32]
    if (folder / TunedPredictor.TRAINING_FILE).is_file():
        os.utime(folder)
        return folder
    root.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".tuning-") as scratch:
        partial = Path(scratch) / "tuned"
        partial.mkdir()
        settings = FineTuneSettings.from_params(params)
        head, report = finetune_and_export(inputs, targets, settings, seed, partial / MODEL_FILE)
        head.save(partial)
        write_json(
            partial / TunedPredictor.TRAINING_FILE,
            {"params": params, "seed": seed, "rows": len(inputs), **report.to_dict()},
        )
        with contextlib.suppress(OSError):  # another process cached the same tuning first: theirs is identical
            os.replace(partial, folder)
    for stale in sorted(root.iterdir(), key=_mtime)[:-KEEP_TUNED]:
        if not stale.name.startswith("."):
            shutil.rmtree(stale, ignore_errors=True)
    return folder


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
    int8: ClassVar[bool] = False

    def grid(self, n_rows: int) -> list[Params]:
        return [dict(DEFAULTS)]

    def fit(self, inputs: Sequence[str], targets: Sequence[str], params: Params, seed: int) -> TunedPredictor:
        tuned = _tuned(inputs, targets, {**DEFAULTS, **params}, seed)
        scratch = tempfile.TemporaryDirectory(prefix="shoal-finetune-")  # a copy the cache's eviction cannot touch
        model_path = Path(scratch.name) / MODEL_FILE
        if self.int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(tuned / MODEL_FILE, model_path, weight_type=QuantType.QInt8, per_channel=True)
        else:
            shutil.copyfile(tuned / MODEL_FILE, model_path)
        encoder = OnnxEncoder(model_path, source_dir() / TOKENIZER_FILE)
        training = read_json(tuned / TunedPredictor.TRAINING_FILE)
        return TunedPredictor(encoder, LinearHead.load(tuned), training, scratch)

    def load(self, folder: Path) -> TunedPredictor:
        return TunedPredictor.load(OnnxEncoder.load(folder), folder)


@register
class MiniLMFineTuneInt8(MiniLMFineTune):
    name = "minilm-finetune-int8"
    cost = 400.0
    expected_size_mb = 25.0
    int8 = True
    quantized_from = "minilm-finetune"
