"""`TunedFamily`: the base of the families that fine-tune the MiniLM body (`setfit`, `minilm-finetune`) and of their
int8 variants, which quantize the fp32 sibling's tuned body instead of tuning their own.

Tuned bodies are cached on disk. `train/search.py` and the trainer fit both variants on the same folds with the same
seed, so each fit's key (family, texts, labels, params, seed, weights) recurs: whichever variant runs first pays for
the tuning.

A cache entry is a folder holding `encoder.onnx` (fp32), the served head (`LinearHead` arrays) and `tuning.json`;
it appears atomically (built in a scratch folder, then renamed) and the least recently used beyond `KEEP` are
dropped, per family. A predictor gets its own copy of the encoder, so eviction never touches a live model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from abc import abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from shoal.families.base import Family, Params, read_json, write_json
from shoal.families.embedding_family import TunedPredictor
from shoal.families.runtime.linear_head import LinearHead
from shoal.families.runtime.minilm_source import TOKENIZER_FILE, cache_dir, source_dir, weights_hash
from shoal.families.runtime.onnx_encoder import MODEL_FILE, OnnxEncoder
from shoal.families.runtime.onnx_export import quantize_int8

#: tuned bodies kept (~90 MB each)
KEEP = 8


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # evicted by another process meanwhile
        return 0.0


def cached_tuning(family: str, key: list[Any], build: Callable[[Path], None]) -> Path:
    """The cache folder of `family`'s tuning for `key` (JSON-able values), filled by `build(folder)` unless cached."""
    root = cache_dir() / "tuned" / family
    digest = hashlib.sha256(json.dumps([*key, weights_hash()], sort_keys=True).encode()).hexdigest()[:32]
    folder = root / digest
    if folder.is_dir():
        os.utime(folder)
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".tuning-") as scratch:
        partial = Path(scratch) / "tuned"
        partial.mkdir()
        build(partial)
        with contextlib.suppress(OSError):  # another process cached the same tuning first: theirs is as good
            os.replace(partial, folder)
    for stale in sorted(root.iterdir(), key=_mtime)[:-KEEP]:
        if not stale.name.startswith("."):
            shutil.rmtree(stale, ignore_errors=True)
    return folder


def tuned_predictor(folder: Path, int8: bool) -> TunedPredictor:
    """A predictor from a cache entry: a private copy of its encoder (quantized to int8 by `onnx_export.quantize_int8`
    when asked), its head and its `tuning.json`."""
    scratch = tempfile.TemporaryDirectory(prefix="shoal-tuned-")
    model_path = Path(scratch.name) / MODEL_FILE
    if int8:
        quantize_int8(folder / MODEL_FILE, model_path)
    else:
        shutil.copyfile(folder / MODEL_FILE, model_path)
    encoder = OnnxEncoder(model_path, source_dir() / TOKENIZER_FILE)
    training = read_json(folder / TunedPredictor.TRAINING_FILE)
    return TunedPredictor(encoder, LinearHead.load(folder), training, scratch)


class TunedFamily(Family):
    """A text classifier whose `tune` fine-tunes the body and writes the encoder and served head to a folder; one
    setting (`defaults`); the artifact is the `minilm-logreg` layout plus `tuning.json`, served without torch."""

    task = "text-classification"
    #: the MiniLM fp32 encoder at batch 1: p95 31 ms measured on 2 busy cores (load ~6); the artifact is 91 MB
    expected_p95_ms = 30.0
    expected_size_mb = 95.0
    defaults: ClassVar[Params] = {}
    int8: ClassVar[bool] = False

    @abstractmethod
    def tune(self, inputs: Sequence[str], targets: Sequence[str], params: Params, seed: int, folder: Path) -> dict:
        """Fine-tune on (inputs, targets); write `encoder.onnx` (fp32) and the served head into `folder`; return how
        the tuning went (stored in `tuning.json`)."""

    def grid(self, n_rows: int) -> list[Params]:
        return [dict(self.defaults)]

    def fit(self, inputs: Sequence[str], targets: Sequence[str], params: Params, seed: int) -> TunedPredictor:
        params = {**self.defaults, **params}

        def build(folder: Path) -> None:
            report = self.tune(inputs, targets, params, seed, folder)
            training = {"params": params, "seed": seed, "rows": len(inputs), **report}
            write_json(folder / TunedPredictor.TRAINING_FILE, training)

        key = [list(inputs), [str(t) for t in targets], params, seed]
        return tuned_predictor(cached_tuning(self.quantized_from or self.name, key, build), self.int8)

    def load(self, folder: Path) -> TunedPredictor:
        return TunedPredictor.load(OnnxEncoder.load(folder), folder)
