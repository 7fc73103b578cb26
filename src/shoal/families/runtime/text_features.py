"""The TF-IDF features shared by the linear text families: word 1-2 grams and char_wb 2-5 grams."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.sparse import _sparsetools
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.utils._sparse import _align_api_if_sparse

#: above 20,000 training texts a term must occur in one text of every `TEXTS_PER_TERM` (not just in 2) to be a
#: feature, so the vocabulary, and with it the logistic regression's parameters (one per term and class), grows
#: more slowly than the rows: L-BFGS's own work per iteration is proportional to them (55% of the logistic
#: regression's search fits on 45,000 texts, py-spy). Banking77 and TweetEval (10,000-13,000 texts) keep min_df 2.
TEXTS_PER_TERM = 10_000


def min_df(n_rows: int) -> int:
    """The texts a term must occur in to be a feature: 1 below 2,000 texts, 2 up to 20,000, then 1 in 10,000."""
    return 1 if n_rows < 2000 else max(2, math.ceil(n_rows / TEXTS_PER_TERM))


def tfidf_features(n_rows: int) -> FeatureUnion:
    min_df_ = min_df(n_rows)
    return FeatureUnion(
        [
            ("word", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=min_df_, dtype=np.float32)),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=min_df_, dtype=np.float32
                ),
            ),
        ]
    )


def fit_tfidf(inputs: Sequence[str]) -> tuple[FeatureUnion, Any]:
    """`tfidf_features` fitted on `inputs`, and the features of `inputs`, each part fitted on its own
    (`fit_vectorizer`) and stacked as `FeatureUnion.fit_transform` stacks them. The terms min_df dropped are
    forgotten: scikit-learn keeps them only for introspection, and they can make an artifact ten times larger."""
    features = tfidf_features(len(inputs))
    texts = list(inputs)
    matrices = [fit_vectorizer(vectorizer, texts) for _, vectorizer in features.transformer_list]
    for _, vectorizer in features.transformer_list:
        vectorizer.stop_words_ = None
    return features, sp.hstack(matrices, format="csr")


def fit_vectorizer(vectorizer: TfidfVectorizer, texts: list[str]) -> Any:
    """`vectorizer.fit_transform(texts)`, the same numbers and vocabulary, its terms counted faster for a `char_wb`
    analyzer (`_count_by_word`, a third of the time on 45,000 tweets): scikit-learn's own `fit_transform` runs, only
    its counting step (`_count_vocab`) is replaced for this call."""
    if vectorizer.analyzer != "char_wb" or vectorizer.input != "content":
        return vectorizer.fit_transform(texts)
    vectorizer._count_vocab = functools.partial(_count_by_word, vectorizer)  # type: ignore[method-assign]
    try:
        return vectorizer.fit_transform(texts)
    finally:
        del vectorizer._count_vocab  # the class's method again (nothing of this call is saved with the artifact)


def _count_by_word(vectorizer: TfidfVectorizer, texts: list[str], fixed_vocab: bool) -> tuple[dict[str, int], Any]:
    """scikit-learn's `CountVectorizer._count_vocab` for a `char_wb` analyzer: the same vocabulary (terms numbered in
    order of first occurrence) and the same sorted count matrix, each distinct word's n-grams made and looked up once
    (a char_wb n-gram never crosses a word boundary) instead of once per occurrence."""
    if fixed_vocab:
        return type(vectorizer)._count_vocab(vectorizer, texts, fixed_vocab)
    vocabulary: dict[str, int] = {}
    words: dict[str, np.ndarray] = {}
    prepare, white = vectorizer.build_preprocessor(), vectorizer._white_spaces
    parts, sizes = [_NONE], []
    for text in texts:
        size = 0
        for word in white.sub(" ", prepare(vectorizer.decode(text))).split():
            columns = words.get(word)
            if columns is None:
                grams = vectorizer._char_wb_ngrams(word)
                columns = np.array([vocabulary.setdefault(g, len(vocabulary)) for g in grams], dtype=np.int64)
                words[word] = columns
            parts.append(columns)
            size += len(columns)
        sizes.append(size)
    if not vocabulary:
        raise ValueError("empty vocabulary; perhaps the documents only contain stop words")
    n, width = len(texts), len(vocabulary)
    rows = np.repeat(np.arange(0, n * width, width, dtype=np.int64), sizes)
    keys, counts = np.unique(rows + np.concatenate(parts), return_counts=True)
    rows, columns = np.divmod(keys, width)
    index = np.int32 if len(keys) <= np.iinfo(np.int32).max else np.int64
    indptr = np.zeros(n + 1, dtype=index)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    matrix = sp.csr_array(
        (counts.astype(np.intc), columns.astype(index), indptr), shape=(n, width), dtype=vectorizer.dtype
    )
    return vocabulary, _align_api_if_sparse(matrix)


def tfidf_transform(features: FeatureUnion, inputs: Sequence[str]) -> Any:
    """The features of `inputs` by fitted `tfidf_features`: `FastTfidf`'s numbers (scikit-learn's, faster)."""
    return FastTfidf(features).transform(list(inputs)) if FastTfidf.supports(features) else features.transform(inputs)


def tfidf_pipeline(features: FeatureUnion, head: Any) -> Pipeline:
    """The served pipeline of fitted TF-IDF features and a fitted head."""
    return Pipeline([("features", features), ("clf", head)])


class _Terms:
    """The vocabulary columns of each text's terms for one fitted TfidfVectorizer (one per occurrence): scikit-learn
    counts every n-gram of every text in a Python loop; here a char_wb vectorizer's n-grams are produced once per
    distinct word (its n-grams never cross a word boundary) and remembered as vocabulary indices. The word analyzer
    is the vectorizer's own."""

    #: distinct words remembered per vectorizer; the memory is cleared when it is reached
    max_words = 50_000

    def __init__(self, vectorizer: TfidfVectorizer) -> None:
        self.vectorizer = vectorizer
        self.vocabulary: dict[str, int] = vectorizer.vocabulary_
        self.width = len(self.vocabulary)
        self.char_wb = vectorizer.analyzer == "char_wb"
        self.words: dict[str, np.ndarray] = {}
        self._prepare = vectorizer.build_preprocessor()
        self._tokenize = vectorizer.build_tokenizer()
        self._stop_words = vectorizer.get_stop_words()

    @staticmethod
    def supports(vectorizer: object) -> bool:
        """Whether `vectorizer` is a fitted TfidfVectorizer whose matrix `FastTfidf` reproduces exactly."""
        return (
            type(vectorizer) is TfidfVectorizer
            and hasattr(vectorizer, "vocabulary_")
            and vectorizer.input == "content"
            and vectorizer.analyzer in ("char_wb", "word")
            and not vectorizer.binary
            and vectorizer.preprocessor is None
            and vectorizer.tokenizer is None
            and hasattr(vectorizer, "_tfidf")
            and vectorizer._tfidf.norm in ("l1", "l2", None)
            and np.dtype(vectorizer.dtype) in (np.float32, np.float64)
        )

    def columns(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """The columns of every text's terms (one per occurrence), and how many each text has."""
        return self._char_wb_columns(texts) if self.char_wb else self._word_columns(texts)

    def _word_columns(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        vocabulary, flat, sizes = self.vocabulary, [], []
        for text in texts:
            before = len(flat)
            flat += [i for i in map(vocabulary.get, self._word_ngrams(text)) if i is not None]
            sizes.append(len(flat) - before)
        return np.array(flat, dtype=np.int64), sizes

    def _word_ngrams(self, text: str) -> list[str]:
        """The vectorizer's analyzer (decode, preprocess, tokenize, drop stop words, n-grams), its n-grams joined from
        `zip`s of the tokens instead of a slice and a call per n-gram: the same terms in the same order."""
        vectorizer = self.vectorizer
        tokens = self._tokenize(self._prepare(vectorizer.decode(text)))
        if self._stop_words is not None:
            tokens = [token for token in tokens if token not in self._stop_words]
        low, high = vectorizer.ngram_range
        grams = list(tokens) if low == 1 else []
        for n in range(max(low, 2), high + 1):
            grams += map(" ".join, zip(*(tokens[i:] for i in range(n)), strict=False))  # shorter shifts end it
        return grams

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


def _weighting(vectorizer: TfidfVectorizer) -> tuple[bool, str | None, np.dtype[Any], np.dtype[Any] | None]:
    """What a fitted vectorizer's weighting (its `TfidfTransformer`'s) depends on besides its idf values: vectorizers
    alike in this are weighted as one."""
    tfidf = vectorizer._tfidf
    idf = getattr(tfidf, "idf_", None)
    return tfidf.sublinear_tf, tfidf.norm, np.dtype(vectorizer.dtype), None if idf is None else idf.dtype


class FastTfidf:
    """`transform` of a fitted TfidfVectorizer, or of a FeatureUnion of alike-weighted ones (the same sublinear_tf,
    norm, dtype and idf use), with the same numbers, for the server's hot path.

    The term counts of a whole batch, every vectorizer side by side, are made by one `np.unique` over (row, union
    column) keys, which gives the sorted CSR matrix scikit-learn's `hstack` of the vectorizers' matrices has; the
    TF-IDF weighting and normalization repeat `TfidfTransformer`'s arithmetic in the same order (its Cython row
    norms: float32 squares summed in float64, row by row in column order, then each value divided in float64), each
    vectorizer's part of a row normalized on its own, so the output is scikit-learn's to the bit
    (tests/test_text_features.py).
    """

    def __init__(self, step: TfidfVectorizer | FeatureUnion) -> None:
        vectorizers = [part for _, part in step.transformer_list] if type(step) is FeatureUnion else [step]
        self.parts = [_Terms(vectorizer) for vectorizer in vectorizers]
        self.offsets = np.cumsum([0] + [part.width for part in self.parts])
        self.width = int(self.offsets[-1])
        self.part_of = np.repeat(np.arange(len(self.parts)), [part.width for part in self.parts])  # by column
        self.sublinear, self.norm, self.dtype, _ = _weighting(vectorizers[0])
        idfs = [getattr(vectorizer._tfidf, "idf_", None) for vectorizer in vectorizers]
        self.idf = None if idfs[0] is None else np.concatenate(idfs)

    @staticmethod
    def supports(step: object) -> bool:
        """Whether `step` is a TfidfVectorizer, or a FeatureUnion of alike-weighted ones, reproduced exactly."""
        if type(step) is not FeatureUnion:
            return _Terms.supports(step)
        parts = [part for _, part in step.transformer_list]
        return (
            step.transformer_weights is None
            and bool(parts)
            and all(_Terms.supports(part) for part in parts)
            and len({_weighting(part) for part in parts}) == 1
        )

    def transform(self, texts: list[str]) -> sp.csr_array:
        """What the step's `transform` returns, without its per-call input validation."""
        return self.entries(texts).matrix()

    def entries(self, texts: list[str]) -> Entries:
        """The parts of `transform`'s matrix, not built into one (`Entries.times`)."""
        return entries_together([self], [texts])[0]

    def together_key(self) -> tuple[Any, ...]:
        """What `entries_together` needs alike in the vectorizers it weights as one."""
        return self.sublinear, self.norm, self.dtype, self.idf is None, len(self.parts)


def entries_together(fasts: Sequence[FastTfidf], batches: Sequence[list[str]]) -> list[Entries]:
    """`fasts[i].entries(batches[i])` for every i, the same numbers, made as one batch: the terms of every text of
    every batch counted by one sort, weighted and normalized by one pass, each batch's entries then cut out (its rows
    are contiguous). The vectorizers must have the same `together_key`. A server of many models runs many batches of
    a few texts, whose cost is mostly these steps' fixed per-call costs, not their arithmetic."""
    first = fasts[0]
    width = max(fast.width for fast in fasts)  # a key is (row of all batches) * width + column
    keys, bases, base = [], [], 0
    for fast, texts in zip(fasts, batches, strict=True):
        starts = np.arange(base * width, (base + len(texts)) * width, width, dtype=np.int64)  # each row's first key
        for part, offset in zip(fast.parts, fast.offsets, strict=False):
            flat, sizes = part.columns(texts)
            keys.append(np.repeat(starts + offset, sizes) + flat)
        bases.append(base)
        base += len(texts)
    keys, counts = _counted(np.concatenate(keys) if len(keys) > 1 else keys[0])
    rows, columns = np.divmod(keys, width)
    # each batch's entries, in order: its rows are bases[i] .. bases[i + 1] - 1
    bounds = [0, len(keys)] if len(fasts) == 1 else np.searchsorted(rows, [*bases, base]).tolist()
    cuts = [slice(bounds[i], bounds[i + 1]) for i in range(len(fasts))]
    values = counts.astype(first.dtype)
    if first.sublinear:
        np.log(values, values)
        values += 1.0
    if first.idf is not None:
        for fast, cut in zip(fasts, cuts, strict=True):
            values[cut] *= fast.idf[columns[cut]]  # type: ignore[index]
    if first.norm is not None:
        # each vectorizer's part of a row is normalized on its own: one group per (row, part)
        groups = rows
        if len(first.parts) > 1:
            groups = rows * len(first.parts)
            for fast, cut in zip(fasts, cuts, strict=True):
                groups[cut] += fast.part_of[columns[cut]]
        sizes = np.abs(values) if first.norm == "l1" else values * values
        # float64 even for a batch with no known term at all (bincount of nothing counts in int64)
        norms = np.bincount(groups, weights=sizes, minlength=base * len(first.parts)).astype(np.float64, copy=False)
        if first.norm == "l2":
            np.sqrt(norms, norms)
        norms[norms == 0.0] = 1.0
        values /= norms[groups]
    return [
        _entries(rows[cut] - start if start else rows[cut], columns[cut], values[cut], (len(texts), fast.width))
        for fast, texts, cut, start in zip(fasts, batches, cuts, bases, strict=True)
    ]


class Entries(NamedTuple):
    """A CSR matrix's parts (where each row starts, columns, values) in the dtypes `sp.csr_array` keeps, and its
    shape."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    shape: tuple[int, int]

    def matrix(self) -> sp.csr_array:
        return sp.csr_array((self.data, self.indices, self.indptr), shape=self.shape)

    def times(self, dense: np.ndarray) -> np.ndarray:
        """`self.matrix() @ dense` for a 2-D `dense`: scipy's own kernel, called as its `_matmul_multivector` calls
        it (the same numbers to the bit), without building the matrix and without scipy's per-call checks and
        dispatch, which take longer than the product itself for a batch of a few texts (a server of many models
        runs many such batches)."""
        rows, width = self.shape
        if dense.ndim != 2 or dense.shape[0] != width:  # the kernel reads `dense` unchecked: never out of bounds
            raise ValueError(f"a {self.shape} matrix cannot multiply a {dense.shape} one")
        out = np.zeros((rows, dense.shape[1]), dtype=np.result_type(self.data.dtype, dense.dtype))
        indptr, indices, data = self.indptr, self.indices, self.data
        _sparsetools.csr_matvecs(rows, width, dense.shape[1], indptr, indices, data, dense.ravel(), out.ravel())
        return out


def _counted(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(keys, return_counts=True)` of a 1-D integer array, which it sorts in place: the same steps without
    `np.unique`'s wrappers, which cost more than the sort for a batch of a few texts."""
    keys.sort()
    first = np.empty(len(keys), dtype=bool)
    first[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    counts = np.empty_like(starts)
    counts[:-1] = starts[1:] - starts[:-1]
    counts[-1:] = len(keys) - starts[-1:]
    return keys[starts], counts


def _entries(rows: np.ndarray, columns: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> Entries:
    """The CSR parts of entries in (row, column) order."""
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    index = np.int32 if max(len(values), shape[1]) <= np.iinfo(np.int32).max else np.int64
    return Entries(indptr.astype(index), columns.astype(index), values, shape)
