"""The TF-IDF features shared by the linear text families: word 1-2 grams and char_wb 2-5 grams."""

from __future__ import annotations

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


def drop_stop_words(model: Pipeline) -> Pipeline:
    """Forget the terms min_df dropped: scikit-learn keeps them only for introspection, and they can make
    an artifact ten times larger."""
    for _, vectorizer in model.named_steps["features"].transformer_list:
        vectorizer.stop_words_ = None
    return model
