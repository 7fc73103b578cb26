"""Export all-MiniLM-L6-v2 to ONNX with torch, once per weights version, and its dynamic int8 quantization
(per output channel).

Training-time only: torch is imported inside `_export` (via `torch_body`), so loading or serving a model never
imports it. The graph is `torch_body.export`'s: input_ids + attention_mask -> mean-pooled embedding.
"""

from __future__ import annotations

from pathlib import Path

from shoal.families.runtime.minilm_source import cached_file

FP32_FILE = "encoder-fp32.onnx"
INT8_FILE = "encoder-int8-per-channel.onnx"


def _export(path: Path) -> None:
    from shoal.families.runtime.torch_body import export, load_body

    export(load_body(trainable=False), path)


def quantize_int8(source: Path, path: Path) -> None:
    """Dynamic int8 quantization of an fp32 encoder graph, one scale per output channel: the embeddings stay far
    closer to fp32 (mean cosine 0.994 vs 0.970 per tensor on Banking77) at the same speed."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(source, path, weight_type=QuantType.QInt8, per_channel=True)


def _quantize(path: Path) -> None:
    quantize_int8(encoder_onnx(), path)


def encoder_onnx(int8: bool = False) -> Path:
    """Path of the cached ONNX encoder (fp32, or dynamically quantized to int8), exported on first use."""
    return cached_file(INT8_FILE, _quantize) if int8 else cached_file(FP32_FILE, _export)
