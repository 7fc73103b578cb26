"""Families made of a frozen text embedder and a `LinearHead`: the embedder is computed once per text per process.

`train/search.py` calls `fit` once per (fold, params) with overlapping subsets of the same texts; the
`EmbeddingMemo` keeps every training text's embedding, so only the head is refit and `fit` runs the embedder once
per text in each process (bounded, oldest texts forgotten first). Predicting never uses the memo, so latency
profiles stay honest; a held-out fold's texts are therefore embedded again for each grid point.
"""

from __future__ import annotations

import tempfile
from abc import abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shoal.families.base import Family, Params, Predictor, read_json, write_json
from shoal.families.runtime.linear_head import LinearHead

#: texts whose embeddings a process keeps across fits (~300 MB at 384 float32 dims)
MEMO_TEXTS = 200_000


class Embedder(Protocol):
    def encode(self, texts: Sequence[str]) -> np.ndarray: ...

    def save(self, folder: Path) -> None: ...

    def n_parameters(self) -> int: ...


class EmbeddingMemo:
    """Embeddings per (embedder key, text), computed only for texts not seen before."""

    def __init__(self, max_texts: int) -> None:
        self.max_texts = max_texts
        self._rows: dict[tuple[str, str], np.ndarray] = {}

    def embed(self, key: str, encode: Callable[[list[str]], np.ndarray], texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(text for text in texts if (key, text) not in self._rows))
        if missing:
            self._rows.update(zip(((key, text) for text in missing), encode(missing), strict=True))
        out = np.stack([self._rows[key, text] for text in texts])
        for stale in list(self._rows)[: max(0, len(self._rows) - self.max_texts)]:
            del self._rows[stale]
        return out


MEMO = EmbeddingMemo(MEMO_TEXTS)


class EmbeddingPredictor(Predictor):
    """Embed, then the linear head."""

    def __init__(self, embedder: Embedder, head: LinearHead) -> None:
        self.embedder, self.head, self.labels = embedder, head, head.labels

    def predict_proba(self, inputs: Sequence[str]) -> np.ndarray:
        return self.head.predict_proba(self.embedder.encode(list(inputs)))

    def save(self, folder: Path) -> None:
        self.embedder.save(folder)
        self.head.save(folder)

    def n_parameters(self) -> int:
        return self.embedder.n_parameters() + self.head.n_parameters()


class TunedPredictor(EmbeddingPredictor):
    """A fine-tuned encoder + linear head, saved with how the tuning went (`tuning.json`). A freshly fit one keeps its
    encoder file in a scratch folder, deleted with the predictor."""

    TRAINING_FILE = "tuning.json"

    def __init__(
        self,
        embedder: Embedder,
        head: LinearHead,
        training: dict[str, Any],
        scratch: tempfile.TemporaryDirectory[str] | None = None,
    ) -> None:
        super().__init__(embedder, head)
        self.training, self._scratch = training, scratch

    def save(self, folder: Path) -> None:
        super().save(folder)
        write_json(folder / self.TRAINING_FILE, self.training)

    @classmethod
    def load(cls, embedder: Embedder, folder: Path) -> TunedPredictor:
        """The predictor `save` wrote into `folder`, around the embedder loaded from there."""
        return cls(embedder, LinearHead.load(folder), read_json(folder / cls.TRAINING_FILE))


class EmbeddingFamily(Family):
    """A frozen embedder (built once per process by `embedder`) + logistic regression searched over C."""

    task = "text-classification"

    def grid(self, n_rows: int) -> list[Params]:
        return [{"C": 10.0}, {"C": 100.0}]

    @abstractmethod
    def embedder(self) -> Embedder:
        """The embedder used for training (cached, built from the bundled weights on first use)."""

    @abstractmethod
    def load_embedder(self, folder: Path) -> Embedder:
        """The embedder that `Embedder.save` wrote into `folder`."""

    def fit(self, inputs: Sequence[str], targets: Sequence[str], params: Params, seed: int) -> EmbeddingPredictor:
        embedder = self.embedder()
        x = MEMO.embed(self.name, embedder.encode, inputs)
        return EmbeddingPredictor(embedder, LinearHead.fit(x, targets, params.get("C", 10.0), seed))

    def load(self, folder: Path) -> EmbeddingPredictor:
        return EmbeddingPredictor(self.load_embedder(folder), LinearHead.load(folder))
