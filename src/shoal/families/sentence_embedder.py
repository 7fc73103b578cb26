"""The embedding families: a frozen sentence encoder served as is. `fit` trains nothing (the encoders are
pretrained); the artifact is the encoder's own files, and predicting returns unit-length embeddings.

`minilm-embed` / `minilm-embed-int8`: all-MiniLM-L6-v2 in ONNX Runtime (fp32 / int8); `static-embed`: the static
token table distilled from it (numpy only). Both need the `embeddings` extra; neither imports torch to predict.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from shoal.families import register
from shoal.families.base import Family, Params, Predictor


class EmbedderPredictor(Predictor):
    """`predict_proba(texts)` is the embeddings, shape (len(texts), dim); `labels` name the dimensions."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder
        self.dim = int(embedder.encode(["dimension probe"]).shape[1])
        self.labels = [f"dim_{i}" for i in range(self.dim)]

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
        return np.asarray(self.embedder.encode(list(inputs)), dtype=np.float32)

    def save(self, folder: Path) -> None:
        self.embedder.save(folder)

    def n_parameters(self) -> int:
        return int(self.embedder.n_parameters())


class EmbedderFamily(Family):
    task = "embedding"

    @abstractmethod
    def embedder(self) -> Any:
        """The pretrained encoder (built from the bundled weights on first use)."""

    @abstractmethod
    def load_embedder(self, folder: Path) -> Any:
        """The encoder that `save` wrote into `folder`."""

    def fit(self, inputs: Sequence[Any], targets: Sequence[Any], params: Params, seed: int) -> EmbedderPredictor:
        return EmbedderPredictor(self.embedder())

    def load(self, folder: Path) -> EmbedderPredictor:
        return EmbedderPredictor(self.load_embedder(folder))


@register
class MiniLMEmbed(EmbedderFamily):
    name = "minilm-embed"
    cost = 30.0
    expected_p95_ms = 15.0
    expected_size_mb = 90.0
    int8: ClassVar[bool] = False

    def embedder(self) -> Any:
        from shoal.families.minilm_logreg import training_encoder

        return training_encoder(self.int8)

    def load_embedder(self, folder: Path) -> Any:
        from shoal.families.runtime.onnx_encoder import OnnxEncoder

        return OnnxEncoder.load(folder)


@register
class MiniLMEmbedInt8(MiniLMEmbed):
    name = "minilm-embed-int8"
    cost = 15.0
    expected_size_mb = 25.0
    quantized_from = "minilm-embed"
    int8 = True


@register
class StaticEmbed(EmbedderFamily):
    name = "static-embed"
    cost = 1.0
    expected_p95_ms = 1.0
    expected_size_mb = 30.0

    def embedder(self) -> Any:
        from shoal.families.static_logreg import training_embedder

        return training_embedder()

    def load_embedder(self, folder: Path) -> Any:
        from shoal.families.runtime.static_embedder import StaticEmbedder

        return StaticEmbedder.load(folder)
