"""Static sentence embeddings at run time, numpy + `tokenizers` only: tokenize, look up each token's row of a
table, mean-pool, L2-normalize. Lives in a folder as `static_embeddings.npy` (float16) + `tokenizer.json`.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shoal.families.runtime.hf_tokenizer import load_tokenizer
from shoal.families.runtime.normalize import normalize

TABLE_FILE = "static_embeddings.npy"
TOKENIZER_FILE = "tokenizer.json"
MAX_TOKENS = 512


class StaticEmbedder:
    """Mean of per-token vectors (no special tokens); an empty text embeds to zeros."""

    def __init__(self, table_path: Path, tokenizer_path: Path) -> None:
        self.table_path, self.tokenizer_path = table_path, tokenizer_path
        self.table = np.load(table_path, allow_pickle=False).astype(np.float32)
        self.tokenizer = load_tokenizer(tokenizer_path, MAX_TOKENS)
        if self.table.shape[0] != self.tokenizer.get_vocab_size():
            raise ValueError(f"{table_path}: {self.table.shape[0]} rows for {self.tokenizer.get_vocab_size()} tokens")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        out = np.zeros((len(encodings), self.table.shape[1]), dtype=np.float32)
        filled = lengths > 0
        if filled.any():
            ids = np.fromiter((i for e in encodings for i in e.ids), dtype=np.int64, count=int(lengths.sum()))
            starts = np.concatenate([[0], np.cumsum(lengths[filled])[:-1]])
            out[filled] = np.add.reduceat(self.table[ids], starts, axis=0) / lengths[filled, None]
        return normalize(out)

    def save(self, folder: Path) -> None:
        shutil.copyfile(self.table_path, folder / TABLE_FILE)
        shutil.copyfile(self.tokenizer_path, folder / TOKENIZER_FILE)

    def n_parameters(self) -> int:
        return int(self.table.size)

    @classmethod
    def load(cls, folder: Path) -> StaticEmbedder:
        return cls(folder / TABLE_FILE, folder / TOKENIZER_FILE)
