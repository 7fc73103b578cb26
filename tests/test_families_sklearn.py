"""The scikit-learn families predict through a lean path that must give the fitted pipeline's exact numbers."""

from __future__ import annotations

import gc
import shutil
import weakref
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import FeatureUnion, Pipeline

from shoal.families import get_family
from shoal.families.runtime.sklearn_predictor import (
    MODEL_FILE,
    SklearnPredictor,
    UntrustedArtifact,
    _with_term_arrays,
    load_skops,
    sio,
)


@pytest.mark.parametrize("family_name", ["majority", "tfidf-logreg", "tfidf-svm"])
def test_lean_prediction_equals_the_pipeline_before_and_after_a_round_trip(
    family_name: str, sms: pd.DataFrame, tmp_path: Path
) -> None:
    train, test = sms.iloc[:1500], sms.iloc[1500:1800]
    family = get_family(family_name)
    predictor = family.fit(train["text"].tolist(), train["label"].tolist(), family.grid(len(train))[0], 0)
    texts = test["text"].tolist()
    expected = predictor.estimator.predict_proba(texts)  # type: ignore[attr-defined]
    np.testing.assert_allclose(predictor.predict_proba(texts), expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(predictor.predict_proba(texts[:1]), expected[:1], rtol=1e-6, atol=1e-9)
    predictor.save(tmp_path)
    loaded = family.load(tmp_path)
    np.testing.assert_allclose(loaded.predict_proba(texts), expected, rtol=1e-6, atol=1e-9)
    if family_name != "majority":  # a real model, not the floor: it must separate spam from ham
        truth, predicted = test["label"].to_numpy(), np.array(loaded.predict(texts))
        floor = (truth == "ham").mean()  # always answering "ham" (0.87 on these rows)
        accuracy = (predicted == truth).mean()
        assert 1 - accuracy <= (1 - floor) / 2, f"accuracy {accuracy:.3f}: not half the errors of {floor:.3f}"
        assert f1_score(truth, predicted, pos_label="spam") > 0.8  # the floor scores 0


def test_a_tfidf_logistic_regression_predicts_the_pipelines_own_probabilities_to_the_bit(
    banking: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """The served path of a multiclass TF-IDF logistic regression (one matrix for the union, the scores and softmax
    without scikit-learn's validation and dispatch, no scikit-learn config set) calls no scikit-learn code and gives
    the fitted pipeline's `predict_proba` exactly, for any batch; a union of unlike-weighted vectorizers takes the
    part-by-part path, exact too."""
    train, test = banking
    family = get_family("tfidf-logreg")
    predictor = family.fit(train["text"].iloc[:2000].tolist(), train["label"].iloc[:2000].tolist(), {"C": 3.0}, 0)
    assert predictor._lean  # type: ignore[attr-defined]
    texts = [*test["text"].iloc[:300].tolist(), "", "ünïcode 💳 and a term never seen"]
    unlike = Pipeline(
        [
            ("features", FeatureUnion([("w", TfidfVectorizer(norm="l1")), ("c", TfidfVectorizer(analyzer="char_wb"))])),
            ("clf", LogisticRegression(max_iter=50)),
        ]
    ).fit(train["text"].iloc[:500].tolist(), train["label"].iloc[:500].tolist())
    other = SklearnPredictor(unlike)
    assert not other._lean
    for served, estimator in ((predictor, predictor.estimator), (other, unlike)):  # type: ignore[attr-defined]
        for size in (1, 3, 64, len(texts)):
            for start in range(0, min(len(texts), 3 * size), size):
                batch = texts[start : start + size]
                np.testing.assert_array_equal(served.predict_proba(batch), estimator.predict_proba(batch))


def test_vocabularies_are_saved_as_arrays_and_older_artifacts_still_load(sms: pd.DataFrame, tmp_path: Path) -> None:
    """skops rebuilt a vocabulary dict node by node (seconds of Python holding the GIL for a large model); the
    saved form keeps terms as two arrays, leaves the fitted model unchanged, and older artifacts still load."""
    family = get_family("tfidf-logreg")
    predictor = family.fit(sms["text"].iloc[:400].tolist(), sms["label"].iloc[:400].tolist(), {"C": 3.0}, 0)
    vectorizers = [v for _, v in predictor.estimator.named_steps["features"].transformer_list]  # type: ignore[attr-defined]
    vocabularies = [dict(v.vocabulary_) for v in vectorizers]
    texts = [*sms["text"].iloc[400:450].tolist(), "ünïcode 💳 and a term never seen"]
    expected = predictor.predict_proba(texts)

    new, old = tmp_path / "new", tmp_path / "old"
    new.mkdir()
    predictor.save(new)
    assert [v.vocabulary_ for v in vectorizers] == vocabularies  # saving changed nothing in the fitted model
    with zipfile.ZipFile(new / MODEL_FILE) as archive:
        schema = archive.read("schema.json").decode()
    assert '"vocabulary_"' not in schema and '"_shoal_terms_utf8"' in schema
    shutil.copytree(new, old)
    sio.dump(predictor.estimator, old / MODEL_FILE)  # how shoal saved models before: the dicts in the schema

    for folder in (new, old):
        loaded = family.load(folder)
        steps = loaded.estimator.named_steps["features"].transformer_list  # type: ignore[attr-defined]
        assert [v.vocabulary_ for _, v in steps] == vocabularies
        assert not any(hasattr(v, "_shoal_terms_utf8") for _, v in steps)
        np.testing.assert_array_equal(loaded.predict_proba(texts), expected)


def test_term_arrays_that_do_not_match_are_refused(sms: pd.DataFrame, tmp_path: Path) -> None:
    family = get_family("tfidf-logreg")
    predictor = family.fit(sms["text"].iloc[:200].tolist(), sms["label"].iloc[:200].tolist(), {"C": 3.0}, 0)
    saved = _with_term_arrays(predictor.estimator)  # type: ignore[attr-defined]
    word = saved.named_steps["features"].transformer_list[0][1]
    word._shoal_term_ends = word._shoal_term_ends[::-1].copy()
    sio.dump(saved, tmp_path / MODEL_FILE)
    with pytest.raises(UntrustedArtifact, match="term offsets"):
        load_skops(tmp_path / MODEL_FILE, ())


def test_a_loaded_model_is_freed_by_reference_counting(sms: pd.DataFrame, tmp_path: Path) -> None:
    """The server freezes what it loads out of the cycle collector's reach (a full collection per swap paused every
    request), so a replaced version must need no collection to be freed: it may hold no reference cycle."""
    family = get_family("tfidf-svm")  # the deepest pipeline: a union of vectorizers and calibrated classifiers
    family.fit(sms["text"].iloc[:300].tolist(), sms["label"].iloc[:300].tolist(), {"C": 1.0}, 0).save(tmp_path)
    gc.collect()
    gc.disable()
    try:
        loaded = family.load(tmp_path)
        loaded.predict_proba(["warm-up request"])
        refs = [weakref.ref(loaded), weakref.ref(loaded.estimator)]  # type: ignore[attr-defined]
        refs += [weakref.ref(step) for _, step in loaded.estimator.steps]  # type: ignore[attr-defined]
        del loaded
        assert [ref() for ref in refs] == [None] * len(refs)
    finally:
        gc.enable()
