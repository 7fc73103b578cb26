"""`static-crf`: the `crf` tagger with word-cluster features from static embeddings. Every word is embedded with
the static token table distilled from all-MiniLM-L6-v2 (`static-logreg`'s: the mean of its WordPiece vectors), and
its nearest centroid at three granularities (k-means on the table's embedded whole words: 32, 128 and 512
clusters, the same for every fit) is a feature of it and of its neighbours: words the training sentences never held
(most of WNUT-17's test entities) share clusters with words they did. Prediction runs numpy and `tokenizers` only (extra
`embeddings-runtime`); training needs the `embeddings` extra once, to distil the table. The artifact adds the
table (float16 `.npy`), tokenizer.json and the centroids (`.npy`) to the CRFsuite model file.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from shoal.families import register
from shoal.families.base import Family, Params, read_json, write_json
from shoal.families.crf import CONFIG_FILE, CRF, MODEL_FILE, CRFFamily, featurized, token_features, train_crf
from shoal.families.runtime.tokens import Entities

CENTROIDS_FILE = "centroids.npy"
#: the k-means granularities, coarse to fine
LEVELS = (32, 128, 512)
#: features version (see `crf.FEATURES`)
FEATURES = 1


class WordClusters:
    """Each word's nearest centroid at every level, from its static embedding."""

    def __init__(self, embedder: Any, centroids: list[np.ndarray]) -> None:
        self.embedder = embedder
        self.centroids = [c.astype(np.float32) for c in centroids]

    def of(self, words: Sequence[str]) -> np.ndarray:
        """(len(words), levels) cluster ids (a word without tokens in the table: -1)."""
        unique = list(dict.fromkeys(words))
        if not unique:
            return np.zeros((0, len(self.centroids)), dtype=np.int64)
        vectors = self.embedder.encode(unique)
        empty = ~vectors.any(axis=1)
        ids = np.stack([(vectors @ c.T).argmax(axis=1) for c in self.centroids], axis=1)
        ids[empty] = -1
        row = {word: i for i, word in enumerate(unique)}
        return ids[[row[word] for word in words]]

    def features(self, words: list[str]) -> list[dict[str, float]]:
        out = token_features(words)
        ids = self.of(words)
        for i, features in enumerate(out):
            for offset in (-1, 0, 1):
                j = i + offset
                if 0 <= j < len(words):
                    for level, cluster in zip(LEVELS, ids[j], strict=True):
                        features[f"{offset:+d}:c{level}={cluster}"] = 1.0
        return out

    def save(self, folder: Path) -> None:
        self.embedder.save(folder)
        with (folder / CENTROIDS_FILE).open("wb") as handle:
            np.save(handle, np.concatenate(self.centroids), allow_pickle=False)

    def n_parameters(self) -> int:
        return int(self.embedder.n_parameters() + sum(c.size for c in self.centroids))

    @classmethod
    def load(cls, folder: Path) -> WordClusters:
        from shoal.families.runtime.static_embedder import StaticEmbedder

        stacked = np.load(folder / CENTROIDS_FILE, allow_pickle=False)
        bounds = np.cumsum([0, *LEVELS])
        return cls(StaticEmbedder.load(folder), [stacked[a:b] for a, b in pairwise(bounds)])


def fit_clusters(embedder: Any, words: Sequence[str], seed: int) -> list[np.ndarray]:
    """Unit-length centroids at each level of `LEVELS`, by k-means (cosine) on the embedded `words`."""
    from sklearn.cluster import MiniBatchKMeans

    vectors = embedder.encode(list(dict.fromkeys(words)))
    vectors = vectors[vectors.any(axis=1)]
    out = []
    for k in LEVELS:
        model = MiniBatchKMeans(k, random_state=seed, n_init=3, batch_size=4096).fit(vectors)
        centers = model.cluster_centers_
        out.append(centers / np.maximum(np.linalg.norm(centers, axis=1, keepdims=True), 1e-12))
    return out


class StaticCRF(CRF):
    """A CRF whose features add each word's clusters; loaded from its artifact by the trainer (the table is large)."""

    portable = False

    def __init__(self, model: bytes, clusters: WordClusters) -> None:
        super().__init__(model)
        self.clusters = clusters

    def features(self, words: list[str]) -> list[dict[str, float]]:
        return self.clusters.features(words)

    def save(self, folder: Path) -> None:
        super().save(folder)
        write_json(folder / CONFIG_FILE, {"features": FEATURES, "family": "static-crf"})
        self.clusters.save(folder)

    def n_parameters(self) -> int:
        return super().n_parameters() + self.clusters.n_parameters()


@cache
def vocabulary_clusters(seed: int) -> WordClusters:
    """The training embedder with centroids fitted on its table's whole words (not `##` continuations, not `[special]`
    tokens): the same for every fit of a process, so the search's folds share them."""
    from shoal.families.static_logreg import training_embedder

    embedder = training_embedder()
    vocab = embedder.tokenizer.get_vocab()
    words = sorted(word for word in vocab if not word.startswith(("##", "[")) and any(c.isalnum() for c in word))
    return WordClusters(embedder, fit_clusters(embedder, words, seed))


@register
class StaticCRFFamily(Family):
    name = "static-crf"
    task = "token-classification"
    cost = 5.0
    expected_p95_ms = 5.0
    expected_size_mb = 40.0
    expected_train_seconds_per_1k_rows = 15.0

    def grid(self, n_rows: int) -> list[Params]:
        return CRFFamily().grid(n_rows)

    def fit(self, inputs: Sequence[str], targets: Sequence[Entities], params: Params, seed: int) -> StaticCRF:
        clusters = vocabulary_clusters(seed)
        return StaticCRF(train_crf(featurized(inputs, targets, clusters.features), params), clusters)

    def load(self, folder: Path) -> StaticCRF:
        config = read_json(folder / CONFIG_FILE)
        if config.get("features") != FEATURES or config.get("family") != self.name:
            raise ValueError(f"{folder}: not a static-crf artifact of features version {FEATURES}: {config}")
        return StaticCRF((folder / MODEL_FILE).read_bytes(), WordClusters.load(folder))
