"""Export all-MiniLM-L6-v2 to ONNX with torch, once per weights version, and its dynamic int8 quantization.

Training-time only: torch and transformers are imported inside `_export`, so loading or serving a model never
imports them. The graph takes `input_ids` and `attention_mask` and returns the mean-pooled (not yet normalized)
sentence embedding, exactly what sentence-transformers computes before its Normalize module.
"""

from __future__ import annotations

from pathlib import Path

from shoal.families.minilm_source import cached_file, source_dir

FP32_FILE = "encoder-fp32.onnx"
INT8_FILE = "encoder-int8.onnx"
OPSET = 17


def _export(path: Path) -> None:
    import torch
    from transformers import BertModel

    bert = BertModel.from_pretrained(str(source_dir()), attn_implementation="eager", local_files_only=True)
    bert.eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            tokens = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            return (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

    example = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])
    with torch.no_grad():
        torch.onnx.export(
            MeanPooled(),
            (example, (example > 0).long()),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}},
            opset_version=OPSET,
            dynamo=False,
        )


def _quantize(path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(encoder_onnx(), path, weight_type=QuantType.QInt8)


def encoder_onnx(int8: bool = False) -> Path:
    """Path of the cached ONNX encoder (fp32, or dynamically quantized to int8), exported on first use."""
    return cached_file(INT8_FILE, _quantize) if int8 else cached_file(FP32_FILE, _export)
