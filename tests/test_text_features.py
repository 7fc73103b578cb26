"""`FastTfidf` must give a fitted TfidfVectorizer's (and an alike-weighted FeatureUnion of them) own matrix, bit for
bit, on real texts and odd ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from shoal.families.runtime.text_features import FastTfidf, fit_tfidf, tfidf_features

ODD = [
    "",
    "   ",
    "a",
    "I",
    "Ünïcode  ÇAFÉ\u00a0non-breaking\ttab\nnew line\r\n",
    "\x1cfile\x1dgroup\x1erecord\x1funit separators",
    "emoji 😀 ok 😀😀",
    "ﬁ ligature and İstanbul (lowercases to two code points)",
    "repeat repeat repeat repeat",
    "x" * 400,
    "card card card? card! CARD.",
]


@pytest.fixture(scope="module")
def vectorizers(banking: tuple[pd.DataFrame, pd.DataFrame]) -> list[TfidfVectorizer]:
    train, _ = banking
    union = tfidf_features(len(train)).fit(train["text"].tolist()[:4000])
    return [vectorizer for _, vectorizer in union.transformer_list]


def test_the_matrix_is_the_vectorizers_to_the_bit(
    vectorizers: list[TfidfVectorizer], banking: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    texts = banking[1]["text"].tolist() + ODD
    for vectorizer in vectorizers:
        assert FastTfidf.supports(vectorizer)
        fast = FastTfidf(vectorizer)
        for size in (1, 7, 64, len(texts)):
            for start in range(0, min(len(texts), 4 * size), size):
                batch = texts[start : start + size]
                expected, got = vectorizer.transform(batch), fast.transform(batch)
                assert got.dtype == expected.dtype and got.shape == expected.shape
                np.testing.assert_array_equal(got.indptr, expected.indptr)
                np.testing.assert_array_equal(got.indices, expected.indices)
                np.testing.assert_array_equal(got.data, expected.data)  # exact, not close
        batch = ODD * 3
        np.testing.assert_array_equal(fast.transform(batch).toarray(), vectorizer.transform(batch).toarray())


def test_the_word_memory_is_bounded_and_forgetting_changes_nothing(vectorizers: list[TfidfVectorizer]) -> None:
    char = next(v for v in vectorizers if v.analyzer == "char_wb")
    fast = FastTfidf(char)
    (terms,) = fast.parts
    terms.max_words = 5
    texts = ["lost my card yesterday evening", "my card arrived", "when will my new card arrive please"]
    for _ in range(3):
        np.testing.assert_array_equal(fast.transform(texts).toarray(), char.transform(texts).toarray())
        assert 0 < len(terms.words) <= 5


def test_vectorizers_it_does_not_reproduce_keep_their_own_transform() -> None:
    texts = ["one two", "two three"]
    assert not FastTfidf.supports(TfidfVectorizer(binary=True).fit(texts))
    assert not FastTfidf.supports(TfidfVectorizer(analyzer="char").fit(texts))
    assert not FastTfidf.supports(TfidfVectorizer(preprocessor=str.upper).fit(texts))
    assert not FastTfidf.supports(TfidfVectorizer())  # not fitted
    for options in ({"stop_words": ["one"]}, {"analyzer": "char_wb", "strip_accents": "unicode", "lowercase": False}):
        vectorizer = TfidfVectorizer(**options).fit(ODD)  # type: ignore[arg-type]
        assert FastTfidf.supports(vectorizer)
        np.testing.assert_array_equal(
            FastTfidf(vectorizer).transform(ODD).toarray(), vectorizer.transform(ODD).toarray()
        )


def assert_same_matrix(got: sp.csr_array, expected: sp.csr_matrix) -> None:
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got.indptr, expected.indptr)
    np.testing.assert_array_equal(got.indices, expected.indices)
    np.testing.assert_array_equal(got.data, expected.data)  # exact, not close


def test_a_union_of_vectorizers_is_built_as_one_matrix_equal_to_the_unions_own(
    vectorizers: list[TfidfVectorizer], banking: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    union = FeatureUnion([(v.analyzer, v) for v in vectorizers])
    assert FastTfidf.supports(union)
    fast = FastTfidf(union)
    texts = banking[1]["text"].tolist() + ODD
    for size in (1, 3, 64, len(texts)):
        for start in range(0, min(len(texts), 4 * size), size):
            assert_same_matrix(
                fast.transform(texts[start : start + size]), union.transform(texts[start : start + size])
            )
    assert_same_matrix(fast.transform(ODD * 2), union.transform(ODD * 2))
    for options in ({"norm": "l1", "sublinear_tf": False}, {"norm": None, "use_idf": False, "dtype": np.float64}):
        alike = [TfidfVectorizer(**options).fit(ODD), TfidfVectorizer(analyzer="char_wb", **options).fit(ODD)]  # type: ignore[arg-type]
        other = FeatureUnion([("a", alike[0]), ("b", alike[1])])
        assert FastTfidf.supports(other)
        assert_same_matrix(FastTfidf(other).transform(ODD), other.transform(ODD))
    assert not FastTfidf.supports(FeatureUnion([(v.analyzer, v) for v in vectorizers], transformer_weights={"word": 2}))


def test_a_union_of_differently_weighted_vectorizers_is_left_to_its_parts() -> None:
    """Parts weighted unlike each other (here: norms) are not one matrix; each is still `FastTfidf`, side by side."""
    parts = [TfidfVectorizer(norm="l1").fit(ODD), TfidfVectorizer(analyzer="char_wb", norm="l2").fit(ODD)]
    union = FeatureUnion([("a", parts[0]), ("b", parts[1])])
    assert not FastTfidf.supports(union) and all(FastTfidf.supports(part) for part in parts)


def test_a_batch_with_no_known_term_at_all_is_the_vectorizers_empty_matrix(vectorizers: list[TfidfVectorizer]) -> None:
    # every row empty: no entries to weigh or normalize (a served batch of "" or unknown words, found by a test server)
    batch = ["", "   ", "\u2603"]
    word = next(v for v in vectorizers if v.analyzer == "word")
    assert_same_matrix(FastTfidf(word).transform(batch), word.transform(batch))
    union = FeatureUnion([(v.analyzer, v) for v in vectorizers])
    assert_same_matrix(FastTfidf(union).transform(["", "   "]), union.transform(["", "   "]))


def test_fit_tfidf_fits_what_scikit_learn_fits_to_the_bit(banking: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """`fit_tfidf` counts char_wb terms word by word (`fit_vectorizer`): the same vocabulary, idf and matrix as the
    union's own `fit_transform`, min_df pruning included, and nothing of the faster counting left on the artifact."""
    texts = banking[0]["text"].tolist()[:2500] + ODD
    fitted, matrix = fit_tfidf(texts)
    union = tfidf_features(len(texts))
    expected = union.fit_transform(texts).tocsr()
    for (_, ours), (_, theirs) in zip(fitted.transformer_list, union.transformer_list, strict=True):
        assert ours.vocabulary_ == theirs.vocabulary_
        assert ours.idf_.dtype == theirs.idf_.dtype and np.array_equal(ours.idf_, theirs.idf_)
        assert "_count_vocab" not in vars(ours)
    assert min(len(v.vocabulary_) for _, v in fitted.transformer_list) > 1000
    matrix = matrix.tocsr()
    assert matrix.dtype == expected.dtype and matrix.shape == expected.shape
    for part in ("indptr", "indices", "data"):
        assert np.array_equal(getattr(matrix, part), getattr(expected, part)), part


def test_the_lean_product_refuses_a_matrix_of_another_width(vectorizers: list[TfidfVectorizer]) -> None:
    """scipy's kernel reads the dense side unchecked: coefficients narrower than the vocabulary (a damaged artifact)
    must be an error, never a read past their end."""
    fast = FastTfidf(vectorizers[0])
    entries = fast.entries(["my card has not arrived", "how do I top up"])
    width = entries.shape[1]
    np.testing.assert_array_equal(entries.times(np.ones((width, 3))), entries.matrix() @ np.ones((width, 3)))
    with pytest.raises(ValueError, match="cannot multiply"):
        entries.times(np.ones((width - 1, 3)))
