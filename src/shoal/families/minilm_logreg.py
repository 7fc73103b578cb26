"""`minilm-logreg` and `minilm-logreg-int8`: frozen all-MiniLM-L6-v2 sentence embeddings (ONNX Runtime, fp32 or
dynamically quantized int8) + logistic regression. The artifact holds a copy of the ONNX encoder, tokenizer.json
and the head as `.npy` arrays; loading and predicting never import torch.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import ClassVar

from shoal.families import register
from shoal.families.embedding_family import EmbeddingFamily
from shoal.families.runtime.minilm_source import TOKENIZER_FILE, source_dir
from shoal.families.runtime.onnx_encoder import OnnxEncoder


@cache
def training_encoder(int8: bool) -> OnnxEncoder:
    """The encoder from the cached ONNX export (exported with torch on first use)."""
    from shoal.families.runtime.onnx_export import encoder_onnx

    return OnnxEncoder(encoder_onnx(int8), source_dir() / TOKENIZER_FILE)


@register
class MiniLMLogReg(EmbeddingFamily):
    name = "minilm-logreg"
    cost = 30.0
    int8: ClassVar[bool] = False

    def embedder(self) -> OnnxEncoder:
        return training_encoder(self.int8)

    def load_embedder(self, folder: Path) -> OnnxEncoder:
        return OnnxEncoder.load(folder)


@register
class MiniLMLogRegInt8(MiniLMLogReg):
    name = "minilm-logreg-int8"
    cost = 15.0
    int8 = True
    quantized_from = "minilm-logreg"
