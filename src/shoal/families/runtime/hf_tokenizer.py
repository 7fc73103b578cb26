"""The MiniLM WordPiece tokenizer (`tokenizers`, Rust) configured for shoal's embedders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shoal.families.runtime.minilm_source import INSTALL_HINT, MissingExtra

try:
    from tokenizers import Tokenizer
except ImportError:
    raise MissingExtra(f"tokenizers is missing; {INSTALL_HINT}") from None


def load_tokenizer(path: Path, max_tokens: int) -> Tokenizer:
    """A tokenizer from tokenizer.json, truncating to `max_tokens`, not padding (callers pad their own batches)."""
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_tokens)
    tokenizer.no_padding()
    return tokenizer


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token id lists padded with `pad_id` to the longest (int64, as the encoder takes them), and the attention mask."""
    width = max(len(row) for row in ids)
    out = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros_like(out)
    for i, row in enumerate(ids):
        out[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return out, mask
