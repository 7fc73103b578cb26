"""The TF-IDF features shared by the linear text families: word 1-2 grams and char_wb 2-5 grams."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.utils.sparsefuncs_fast import inplace_csr_row_normalize_l1, inplace_csr_row_normalize_l2


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
    matrix scikit-learn builds. The word analyzer is the vectorizer's own. The TF-IDF weighting and normalization
    are the vectorizer's own as well, so the output is the vectorizer's to the bit (tests/test_text_features.py).
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
        """What `TfidfTransformer.transform` does to the counts, without its per-call input validation."""
        tfidf, counts = self.vectorizer._tfidf, self.counts(texts)
        if tfidf.sublinear_tf:
            np.log(counts.data, counts.data)
            counts.data += 1.0
        if hasattr(tfidf, "idf_"):
            counts.data *= tfidf.idf_[counts.indices]
        if tfidf.norm == "l2":
            inplace_csr_row_normalize_l2(counts)
        elif tfidf.norm == "l1":
            inplace_csr_row_normalize_l1(counts)
        return counts

    def counts(self, texts: list[str]) -> sp.csr_array:
        """The term counts of `texts`: what `CountVectorizer.transform` returns."""
        flat, sizes = self._char_wb_columns(texts) if self.char_wb else self._word_columns(texts)
        rows = np.repeat(np.arange(len(texts), dtype=np.int64), sizes)
        keys, counts = np.unique(rows * self.width + flat, return_counts=True)
        indptr = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(np.bincount(keys // self.width, minlength=len(texts)), out=indptr[1:])
        index = np.int32 if len(keys) <= np.iinfo(np.int32).max else np.int64
        return sp.csr_array(
            (counts.astype(np.intc), (keys % self.width).astype(index), indptr.astype(index)),
            shape=(len(texts), self.width),
            dtype=self.vectorizer.dtype,
        )

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
