"""`static-logreg`: static token embeddings distilled from all-MiniLM-L6-v2 (model2vec style), mean-pooled, +
logistic regression. Prediction is numpy + `tokenizers` only (no torch, no ONNX Runtime); the artifact holds the
table as a float16 `.npy`, tokenizer.json and the head as `.npy` arrays.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from shoal.families import register
from shoal.families.embedding_family import EmbeddingFamily
from shoal.families.runtime.minilm_source import TOKENIZER_FILE, source_dir
from shoal.families.runtime.static_embedder import StaticEmbedder


@cache
def training_embedder() -> StaticEmbedder:
    """The embedder from the cached distilled table (distilled on first use)."""
    from shoal.families.runtime.static_distill import static_table

    return StaticEmbedder(static_table(), source_dir() / TOKENIZER_FILE)


@register
class StaticLogReg(EmbeddingFamily):
    name = "static-logreg"
    cost = 2.0

    def embedder(self) -> StaticEmbedder:
        return training_embedder()

    def load_embedder(self, folder: Path) -> StaticEmbedder:
        return StaticEmbedder.load(folder)
