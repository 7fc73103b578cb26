"""`FastTfidf` must give a fitted TfidfVectorizer's (and an alike-weighted FeatureUnion of them) own matrix, bit for
bit, on real texts and odd ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion

from shoal.families.base import predict_batches
from shoal.families.runtime.sklearn_predictor import SklearnPredictor
from shoal.families.runtime.text_features import FastTfidf, entries_together, fit_tfidf, tfidf_features, tfidf_pipeline

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


def test_batches_of_several_vectorizers_made_together_are_each_ones_own_to_the_bit(
    banking: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """`entries_together` counts and weighs the batches of different fitted unions (other vocabularies, widths and
    idf) as one: each batch's entries are still exactly its own union's, an empty or all-unknown batch row included."""
    train = banking[0]["text"].tolist()
    unions = [fit_tfidf(train[start : start + size])[0] for start, size in ((0, 2500), (3000, 900), (5000, 1500))]
    fasts = [FastTfidf(union) for union in unions]
    assert len({fast.width for fast in fasts}) == 3 and len({fast.together_key() for fast in fasts}) == 1
    texts = banking[1]["text"].tolist()
    batches = [texts[:3], ["", "\u2603", *ODD], texts[3:4], texts[10:74]]
    which = [0, 1, 2, 0]  # one union twice: its two batches stay apart
    owners = [fasts[i] for i in which]
    together = entries_together(owners, batches)
    for fast, union, batch, entries in zip(owners, [unions[i] for i in which], batches, together, strict=True):
        assert_same_matrix(entries.matrix(), union.transform(batch))
        for mine, alone in zip(entries, fast.entries(batch), strict=True):
            np.testing.assert_array_equal(mine, alone)


def test_predictors_of_alike_features_predict_their_batches_together_with_the_same_numbers(
    banking: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """`predict_batches`: two TF-IDF + logistic regression pipelines (other vocabularies and labels) predict their
    batches as one call, a predictor without a lean path alone, and every output is its own `predict_proba`'s."""
    train = banking[0]
    predictors: list[object] = []
    for start, size in ((0, 1500), (4000, 1200)):
        part = train.iloc[start : start + size]
        features, matrix = fit_tfidf(part["text"].tolist())
        head = LogisticRegression(max_iter=200).fit(matrix, part["label"])
        predictors.append(SklearnPredictor(tfidf_pipeline(features, head)))
    lean = predictors[:2]
    assert lean[0].together_key() == lean[1].together_key() is not None  # type: ignore[attr-defined]
    majority = SklearnPredictor(DummyClassifier(strategy="prior").fit(["x", "y", "z"], ["a", "b", "b"]))
    predictors.append(majority)
    assert majority.together_key() is None
    texts = banking[1]["text"].tolist()
    batches = [texts[:5], texts[5:6], ["", *ODD]]
    outputs = predict_batches(predictors, batches)  # type: ignore[arg-type]
    for predictor, batch, output in zip(predictors, batches, outputs, strict=True):
        np.testing.assert_array_equal(output, predictor.predict_proba(batch))  # type: ignore[attr-defined]
