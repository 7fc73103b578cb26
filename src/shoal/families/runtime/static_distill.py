"""Distil static token embeddings from all-MiniLM-L6-v2 (the model2vec recipe), once per weights version.

Every vocabulary token runs through the ONNX encoder as `[CLS] token [SEP]`; the mean-pooled outputs are reduced
by PCA and weighted by log(1 + rank) (Zipf: BERT's vocabulary is roughly ordered by frequency, so rarer tokens weigh
more). The table is cached as a float16 `.npy` (vocabulary size x dims).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from shoal.families.runtime.hf_tokenizer import load_tokenizer
from shoal.families.runtime.minilm_source import TOKENIZER_FILE, cached_file, source_dir

DIMS = 256
BATCH = 1024
CLS, SEP = "[CLS]", "[SEP]"


def token_outputs(encoder_path: Path, vocab_size: int, cls_id: int, sep_id: int) -> np.ndarray:
    """The encoder's mean-pooled output for `[CLS] t [SEP]`, for every token id t."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(encoder_path), providers=["CPUExecutionProvider"])
    out = []
    for start in range(0, vocab_size, BATCH):
        tokens = np.arange(start, min(start + BATCH, vocab_size), dtype=np.int64)
        ids = np.stack([np.full_like(tokens, cls_id), tokens, np.full_like(tokens, sep_id)], axis=1)
        out.append(session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0])
    return np.concatenate(out).astype(np.float64)


def pca(x: np.ndarray, dims: int) -> np.ndarray:
    centered = x - x.mean(axis=0)
    _, _, components = np.linalg.svd(centered, full_matrices=False)
    return centered @ components[:dims].T


def _distill(path: Path, dims: int) -> None:
    from shoal.families.runtime.onnx_export import encoder_onnx

    tokenizer = load_tokenizer(source_dir() / TOKENIZER_FILE, 512)
    vocab_size = tokenizer.get_vocab_size()
    cls_id, sep_id = tokenizer.token_to_id(CLS), tokenizer.token_to_id(SEP)
    reduced = pca(token_outputs(encoder_onnx(), vocab_size, cls_id, sep_id), dims)
    weighted = reduced * np.log1p(np.arange(1, vocab_size + 1))[:, None]
    with path.open("wb") as handle:
        np.save(handle, weighted.astype(np.float16), allow_pickle=False)


def static_table(dims: int = DIMS) -> Path:
    """Path of the cached static embedding table, distilled on first use."""
    return cached_file(f"static-{dims}.npy", partial(_distill, dims=dims))
