"""The TF-IDF features shared by the linear text families: word 1-2 grams and char_wb 2-5 grams."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion, Pipeline


def tfidf_features(n_rows: int) -> FeatureUnion:
    min_df = 2 if n_rows >= 2000 else 1
    return FeatureUnion(
        [
            ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=min_df, dtype=np.float32)),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=min_df, dtype=np.float32
                ),
            ),
        ]
    )


def fit_tfidf(inputs: Sequence[str]) -> tuple[FeatureUnion, Any]:
    """`tfidf_features` fitted on `inputs`, and the features of `inputs`. The terms min_df dropped are forgotten:
    scikit-learn keeps them only for introspection, and they can make an artifact ten times larger."""
    features = tfidf_features(len(inputs))
    matrix = features.fit_transform(list(inputs))
    for _, vectorizer in features.transformer_list:
        vectorizer.stop_words_ = None
    return features, matrix


def tfidf_pipeline(features: FeatureUnion, head: Any) -> Pipeline:
    """The served pipeline of fitted TF-IDF features and a fitted head."""
    return Pipeline([("features", features), ("clf", head)])


class FastTfidf:
    """`vectorizer.transform` of a fitted TfidfVectorizer, with the same numbers, for the server's hot path.

    scikit-learn counts every n-gram of every text in a Python loop; here a char_wb vectorizer's n-grams are
    produced once per distinct word (its n-grams never cross a word boundary) and remembered as vocabulary indices,
    and the counts of a whole batch are made by one `np.unique` over (row, column) keys, which gives the sorted CSR
    matrix scikit-learn builds. The word analyzer is the vectorizer's own; the TF-IDF weighting and normalization
    repeat `TfidfTransformer`'s arithmetic in the same order, so the output is the vectorizer's to the bit
    (tests/test_text_features.py).
    """

    #: distinct words remembered per vectorizer; the memory is cleared when it is reached
    max_words = 50_000

    def __init__(self, vectorizer: TfidfVectorizer) -> None:
        self.vectorizer = vectorizer
        self.vocabulary: dict[str, int] = vectorizer.vocabulary_
        self.width = len(self.vocabulary)
        self.char_wb = vectorizer.analyzer == "char_wb"
        self.words: dict[str, np.ndarray] = {}
        self._prepare = vectorizer.build_preprocessor()
        self._analyze = vectorizer.build_analyzer()

    @staticmethod
    def supports(vectorizer: object) -> bool:
        """Whether `vectorizer` is a fitted TfidfVectorizer this class reproduces exactly."""
        return (
            type(vectorizer) is TfidfVectorizer
            and hasattr(vectorizer, "vocabulary_")
            and vectorizer.input == "content"
            and vectorizer.analyzer in ("char_wb", "word")
            and not vectorizer.binary
            and vectorizer.preprocessor is None
            and vectorizer.tokenizer is None
            and vectorizer.norm in ("l1", "l2", None)
            and np.dtype(vectorizer.dtype) in (np.float32, np.float64)
        )

    def transform(self, texts: list[str]) -> sp.csr_array:
        """What `TfidfVectorizer.transform` returns, without its per-call input validation."""
        rows, columns, values = self.entries(texts)
        return _csr(rows, columns, values, (len(texts), self.width))

    def entries(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows, columns and values of `transform(texts)`'s nonzero entries, in its (row, column) order: the
        term counts weighted and normalized as `TfidfTransformer.transform` does (its Cython row norms: float32
        squares summed in float64, row by row in column order, then each value divided in float64)."""
        flat, sizes = self._char_wb_columns(texts) if self.char_wb else self._word_columns(texts)
        rows = np.repeat(np.arange(len(texts), dtype=np.int64), sizes)
        keys, counts = np.unique(rows * self.width + flat, return_counts=True)
        rows, columns = keys // self.width, keys % self.width
        values = counts.astype(self.vectorizer.dtype)
        tfidf = self.vectorizer._tfidf
        if tfidf.sublinear_tf:
            np.log(values, values)
            values += 1.0
        if hasattr(tfidf, "idf_"):
            values *= tfidf.idf_[columns]
        if tfidf.norm in ("l1", "l2"):
            sizes = np.abs(values) if tfidf.norm == "l1" else values * values
            # float64 even for a batch with no known term at all (bincount of nothing counts in int64)
            norms = np.bincount(rows, weights=sizes, minlength=len(texts)).astype(np.float64, copy=False)
            if tfidf.norm == "l2":
                np.sqrt(norms, norms)
            norms[norms == 0.0] = 1.0
            values /= norms[rows]
        return rows, columns, values

    def _word_columns(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """The columns of every text's terms (one per occurrence), and how many each text has."""
        vocabulary, analyze = self.vocabulary, self._analyze
        flat: list[int] = []
        sizes = []
        for text in texts:
            before = len(flat)
            flat += [i for i in map(vocabulary.get, analyze(text)) if i is not None]
            sizes.append(len(flat) - before)
        return np.array(flat, dtype=np.int64), sizes

    def _char_wb_columns(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """As `_word_columns`, word by word as scikit-learn splits a text, each word's columns remembered."""
        known, vectorizer, prepare = self.words, self.vectorizer, self._prepare
        parts = [_NONE]
        sizes = []
        for text in texts:
            size = 0
            for word in vectorizer._white_spaces.sub(" ", prepare(vectorizer.decode(text))).split():
                columns = known.get(word)
                if columns is None:
                    columns = self._remember(word)
                parts.append(columns)
                size += len(columns)
            sizes.append(size)
        return np.concatenate(parts), sizes

    def _remember(self, word: str) -> np.ndarray:
        vocabulary = self.vocabulary
        grams = self.vectorizer._char_wb_ngrams(word)
        columns = np.array([i for i in map(vocabulary.get, grams) if i is not None], dtype=np.int64)
        if len(self.words) >= self.max_words:
            self.words.clear()
        self.words[word] = columns
        return columns


_NONE = np.empty(0, dtype=np.int64)


class FastUnion:
    """`FeatureUnion.transform` of TF-IDF vectorizers that `FastTfidf` reproduces, side by side: each one's entries,
    then one CSR matrix of them all (what `scipy.sparse.hstack` of their matrices gives, without building each)."""

    def __init__(self, vectorizers: list[TfidfVectorizer]) -> None:
        self.parts = [FastTfidf(vectorizer) for vectorizer in vectorizers]
        self.offsets = np.cumsum([0] + [part.width for part in self.parts])

    @staticmethod
    def supports(union: object) -> bool:
        return (
            type(union) is FeatureUnion
            and union.transformer_weights is None
            and all(FastTfidf.supports(part) for _, part in union.transformer_list)
        )

    def transform(self, texts: list[str]) -> sp.csr_array:
        found = [part.entries(texts) for part in self.parts]
        rows = np.concatenate([r for r, _, _ in found])
        order = np.argsort(rows, kind="stable")  # each part's entries are in row order: rows, then parts' columns
        columns = np.concatenate([c + offset for (_, c, _), offset in zip(found, self.offsets, strict=False)])
        values = np.concatenate([v for _, _, v in found])
        return _csr(rows[order], columns[order], values[order], (len(texts), int(self.offsets[-1])))


def _csr(rows: np.ndarray, columns: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> sp.csr_array:
    """The CSR matrix of entries in (row, column) order."""
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    index = np.int32 if max(len(values), shape[1]) <= np.iinfo(np.int32).max else np.int64
    return sp.csr_array((values, columns.astype(index), indptr.astype(index)), shape=shape)
