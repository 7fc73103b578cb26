"""The TF-IDF features shared by the linear text families: word 1-2 grams and char_wb 2-5 grams."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
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
