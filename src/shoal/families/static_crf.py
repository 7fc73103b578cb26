"""`static-crf`: the `crf` tagger with word-cluster features from static embeddings. Every word is embedded as the
mean of its WordPiece input embeddings in all-MiniLM-L6-v2 (the model's own token table, read from the bundled
weights: no encoder runs, no torch), reduced by PCA; its nearest centroid at three granularities (k-means on the
vocabulary's whole words: 32, 128 and 512 clusters, cached once per weights version) is a feature of it and of its
neighbours, as Brown clusters are in classic NER taggers: words the training sentences never held (most of WNUT-17's
test entities) share clusters with words they did.

Prediction runs numpy and `tokenizers` only; training needs the bundled weights (`embeddings` extra). The artifact
adds the reduced table (float16 `.npy`), tokenizer.json and the centroids (`.npy`) to the CRFsuite model file.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from functools import cache
from itertools import pairwise
from pathlib import Path

import numpy as np

from shoal.families import register
from shoal.families.base import Family, Params, read_json, write_json
from shoal.families.crf import CONFIG_FILE, CRF, MODEL_FILE, CRFFamily, featurized, token_features
from shoal.families.runtime.tokens import Entities

TABLE_FILE, TOKENIZER_FILE, CENTROIDS_FILE = "word_table.npy", "tokenizer.json", "centroids.npy"
#: the k-means granularities, coarse to fine
LEVELS = (32, 128, 512)
#: PCA dimensions of the token table
DIMS = 64
#: features version (see `crf.FEATURES`)
FEATURES = 1


class WordClusters:
    """Each word's nearest centroid at every level, from the mean of its sub-tokens' rows of the table."""

    def __init__(self, table: np.ndarray, tokenizer_path: Path, centroids: list[np.ndarray]) -> None:
        from shoal.families.runtime.hf_tokenizer import load_tokenizer

        # rounded to float16 as it is saved, in training too: the served clusters are those trained and scored
        self.table, self.tokenizer_path = table.astype(np.float16).astype(np.float32), tokenizer_path
        self.tokenizer = load_tokenizer(tokenizer_path, 64)
        self.centroids = [c.astype(np.float32) for c in centroids]

    def vectors(self, words: Sequence[str]) -> np.ndarray:
        """Unit-length word vectors (a word without sub-tokens: zeros)."""
        encodings = self.tokenizer.encode_batch(list(words), add_special_tokens=False)
        out = np.zeros((len(words), self.table.shape[1]), dtype=np.float32)
        for i, encoding in enumerate(encodings):
            if encoding.ids:
                out[i] = self.table[encoding.ids].mean(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)

    def of(self, words: Sequence[str]) -> np.ndarray:
        """(len(words), levels) cluster ids (a word without sub-tokens: -1)."""
        unique = list(dict.fromkeys(words))
        if not unique:
            return np.zeros((0, len(self.centroids)), dtype=np.int64)
        vectors = self.vectors(unique)
        ids = np.stack([(vectors @ c.T).argmax(axis=1) for c in self.centroids], axis=1)
        ids[~vectors.any(axis=1)] = -1
        row = {word: i for i, word in enumerate(unique)}
        return ids[[row[word] for word in words]]

    def features(self, words: list[str]) -> list[dict[str, float]]:
        out = token_features(words)
        ids = self.of(words)
        for i, features in enumerate(out):
            for offset in (-2, -1, 0, 1, 2):
                j = i + offset
                if 0 <= j < len(words):
                    for level, cluster in zip(LEVELS, ids[j], strict=True):
                        if offset in (-1, 0, 1) or level == LEVELS[0]:
                            features[f"{offset:+d}:c{level}={cluster}"] = 1.0
        return out

    def save(self, folder: Path) -> None:
        with (folder / TABLE_FILE).open("wb") as handle:
            np.save(handle, self.table.astype(np.float16), allow_pickle=False)
        shutil.copyfile(self.tokenizer_path, folder / TOKENIZER_FILE)
        with (folder / CENTROIDS_FILE).open("wb") as handle:
            np.save(handle, np.concatenate(self.centroids), allow_pickle=False)

    def n_parameters(self) -> int:
        return int(self.table.size + sum(c.size for c in self.centroids))

    @classmethod
    def load(cls, folder: Path) -> WordClusters:
        stacked = np.load(folder / CENTROIDS_FILE, allow_pickle=False)
        bounds = np.cumsum([0, *LEVELS])
        table = np.load(folder / TABLE_FILE, allow_pickle=False)
        return cls(table, folder / TOKENIZER_FILE, [stacked[a:b] for a, b in pairwise(bounds)])


def _reduced_table() -> np.ndarray:
    """MiniLM's input token embeddings (vocabulary x 384), centred and reduced to `DIMS` by PCA."""
    from safetensors.numpy import load_file

    from shoal.families.runtime.minilm_source import WEIGHTS_FILE, source_dir

    weights = load_file(str(source_dir() / WEIGHTS_FILE))
    name = next(key for key in weights if key.endswith("embeddings.word_embeddings.weight"))
    table = weights[name].astype(np.float64)
    centred = table - table.mean(axis=0)
    _, _, components = np.linalg.svd(centred[::4], full_matrices=False)
    return (centred @ components[:DIMS].T).astype(np.float32)


def _build(path: Path, seed: int) -> None:
    """The reduced table and the centroids of its whole words at every level, in one `.npy`: the table's rows, then
    each level's centroids."""
    from sklearn.cluster import MiniBatchKMeans

    from shoal.families.runtime.hf_tokenizer import load_tokenizer
    from shoal.families.runtime.minilm_source import TOKENIZER_FILE as SOURCE_TOKENIZER
    from shoal.families.runtime.minilm_source import source_dir

    table = _reduced_table()
    vocab = load_tokenizer(source_dir() / SOURCE_TOKENIZER, 64).get_vocab()
    words = [i for word, i in vocab.items() if not word.startswith(("##", "[")) and any(c.isalpha() for c in word)]
    vectors = table[sorted(words)]
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    parts = [table]
    for k in LEVELS:
        centers = MiniBatchKMeans(k, random_state=seed, n_init=3, batch_size=4096).fit(vectors).cluster_centers_
        parts.append(centers / np.maximum(np.linalg.norm(centers, axis=1, keepdims=True), 1e-12))
    with path.open("wb") as handle:
        np.save(handle, np.concatenate(parts).astype(np.float32), allow_pickle=False)


@cache
def vocabulary_clusters() -> WordClusters:
    """The clusters every fit uses (cached on disk once per weights version, so the search's folds share them)."""
    from shoal.families.runtime.minilm_source import TOKENIZER_FILE as SOURCE_TOKENIZER
    from shoal.families.runtime.minilm_source import cached_file, source_dir

    path = cached_file(f"word-clusters-{DIMS}-{'-'.join(map(str, LEVELS))}.npy", lambda p: _build(p, 0))
    stacked = np.load(path, allow_pickle=False)
    rows = len(stacked) - sum(LEVELS)
    bounds = np.cumsum([rows, *LEVELS])
    return WordClusters(stacked[:rows], source_dir() / SOURCE_TOKENIZER, [stacked[a:b] for a, b in pairwise(bounds)])


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


@register
class StaticCRFFamily(Family):
    name = "static-crf"
    task = "token-classification"
    cost = 5.0
    expected_p95_ms = 5.0
    expected_size_mb = 15.0
    expected_train_seconds_per_1k_rows = 15.0

    def grid(self, n_rows: int) -> list[Params]:
        return CRFFamily().grid(n_rows)

    def fit(self, inputs: Sequence[str], targets: Sequence[Entities], params: Params, seed: int) -> StaticCRF:
        from shoal.families.crf import train_crf

        clusters = vocabulary_clusters()
        return StaticCRF(train_crf(featurized(inputs, targets, clusters.features), params), clusters)

    def load(self, folder: Path) -> StaticCRF:
        config = read_json(folder / CONFIG_FILE)
        if config.get("features") != FEATURES or config.get("family") != self.name:
            raise ValueError(f"{folder}: not a static-crf artifact of features version {FEATURES}: {config}")
        return StaticCRF((folder / MODEL_FILE).read_bytes(), WordClusters.load(folder))
