"""A retrain's final fit begins at the production version's solution, moved onto the new features by term and onto
the new classes by name, and reaches the model a fit from zero reaches, in fewer iterations; what cannot be moved
(another family, a binary head, features built another way) starts from zero. The version records where it began.
Real Banking77 rows."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import write_rows
from shoal.data.ingest import ingest_file
from shoal.families import get_family
from shoal.families.tfidf_logreg import TfidfLogReg
from shoal.tasks.text_classification.kind import TextClassification
from shoal.train.search import search_many
from shoal.train.trainer import train_models

INTENTS = 20
PARAMS = {"C": 3.0}


@pytest.fixture(scope="module")
def rows(banking: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(an earlier half of the training rows, all of them, the test rows), on 20 intents."""
    train, test = banking
    intents = sorted(train["label"].unique())[:INTENTS]
    train, test = train[train["label"].isin(intents)], test[test["label"].isin(intents)]
    return train.sample(frac=0.5, random_state=0), train, test


def test_the_final_fit_begins_at_the_earlier_solution_and_reaches_the_same_model(rows) -> None:
    first, full, test = rows
    family = TfidfLogReg()
    unseen = sorted(full["label"].unique())[0]  # a class the earlier version never saw
    earlier_rows = first[first["label"] != unseen]
    earlier = family.fit(earlier_rows["text"].tolist(), earlier_rows["label"].tolist(), PARAMS, 0)
    featurizer, features = family.fit_features(full["text"].tolist())
    targets = full["label"].tolist()

    coef, intercept = family.head_start(earlier, featurizer, targets)

    classes = sorted(set(targets))
    old_union, old_head = earlier.estimator.steps[0][1], earlier.estimator.steps[1][1]
    old_rows = {label: i for i, label in enumerate(old_head.classes_)}
    assert coef.shape == (len(classes), features.shape[1]) and intercept.shape == (len(classes),)
    offset_old = offset_new = 0
    for (_, old), (_, new) in zip(old_union.transformer_list, featurizer.transformer_list, strict=True):
        shared = sorted(set(old.vocabulary_) & set(new.vocabulary_))
        fresh = sorted(set(new.vocabulary_) - set(old.vocabulary_))
        assert shared and fresh
        for term in shared[:: max(1, len(shared) // 50)]:  # a term's weights move to its new column, class by class
            for label in classes[1:4]:
                old_weight = old_head.coef_[old_rows[label], offset_old + old.vocabulary_[term]]
                assert coef[classes.index(label), offset_new + new.vocabulary_[term]] == old_weight
        assert not coef[:, [offset_new + new.vocabulary_[term] for term in fresh]].any()  # a new term: zero
        offset_old, offset_new = offset_old + len(old.vocabulary_), offset_new + len(new.vocabulary_)
    assert not coef[classes.index(unseen)].any() and intercept[classes.index(unseen)] == 0.0
    for label in classes[1:4]:
        assert intercept[classes.index(label)] == old_head.intercept_[old_rows[label]]

    warm = family.fit_head(features, targets, PARAMS, 0, start=(coef, intercept))
    cold = family.fit_head(features, targets, PARAMS, 0)
    assert warm.n_iter_[0] < cold.n_iter_[0], (warm.n_iter_, cold.n_iter_)
    assert not warm.warm_start  # the saved head says nothing about how it was reached
    held = featurizer.transform(test["text"].tolist())
    assert np.mean(warm.predict(held) == cold.predict(held)) >= 0.98
    truth = test["label"].to_numpy()
    assert abs(np.mean(warm.predict(held) == truth) - np.mean(cold.predict(held) == truth)) <= 0.01
    assert np.abs(warm.predict_proba(held) - cold.predict_proba(held)).mean() < 0.01


def test_what_cannot_be_moved_starts_from_zero(rows, sms: pd.DataFrame) -> None:
    first, full, _ = rows
    family = TfidfLogReg()
    texts, labels = first["text"].tolist(), first["label"].tolist()
    earlier = family.fit(texts, labels, PARAMS, 0)
    featurizer, _ = family.fit_features(full["text"].tolist())
    targets = full["label"].tolist()
    assert family.head_start(earlier, featurizer, targets) is not None

    svm = get_family("tfidf-svm").fit(texts, labels, {"C": 0.5}, 0)
    assert family.head_start(svm, featurizer, targets) is None  # another head
    other = copy.deepcopy(featurizer)
    other.transformer_list[1][1].ngram_range = (2, 4)
    assert family.head_start(earlier, other, targets) is None  # features built another way
    spam = sms.head(300)
    binary = family.fit(spam["text"].tolist(), spam["label"].tolist(), PARAMS, 0)
    spam_featurizer, _ = family.fit_features(sms.head(600)["text"].tolist())
    assert family.head_start(binary, spam_featurizer, sms.head(600)["label"].tolist()) is None  # one row: binary
    assert get_family("tfidf-svm").head_start(earlier, featurizer, targets) is None  # liblinear begins at zero


def test_a_retrain_records_the_production_version_its_final_fit_began_at(make_workspace, rows, tmp_path: Path) -> None:
    first, full, test = rows
    model = {"task": "text-classification", "metric": "accuracy", "families": ["tfidf-logreg"], "cv_folds": 2}
    ws = make_workspace({"bank": model})
    ingest_file(ws, "bank", write_rows(tmp_path / "test.csv", test), split="test")
    ingest_file(ws, "bank", write_rows(tmp_path / "first.csv", first), split="train")
    [report] = train_models(ws)
    v1 = ws.registry.version("bank", ws.registry.alias("bank"))
    assert report.production == v1.number and v1.metrics.fit_started_from is None  # nothing to begin at: zero

    rest = full.drop(first.index)
    ingest_file(ws, "bank", write_rows(tmp_path / "rest.csv", rest), split="train")
    [report] = train_models(ws)
    [v2] = [c.version for c in report.candidates if c.version is not None]
    assert v2.number != v1.number and v2.metrics.fit_started_from == v1.number
    assert ws.registry.version("bank", v2.number).metrics.fit_started_from == v1.number  # stored with the version
    assert report.decision is not None  # judged by the gate on the frozen test set, as every version is


def test_a_first_final_fit_begins_at_the_searchs_solution(rows) -> None:
    """With no production version to begin at, the search hands the final fit its first fold's solution of the
    chosen setting, moved onto the features of all rows: fewer iterations to the model a fit from zero reaches.
    liblinear (tfidf-svm) has no start."""
    _, full, test = rows
    full = full.groupby("label").head(40)  # small: the search's fits and two final fits take seconds
    texts, targets = full["text"].tolist(), full["label"].tolist()
    families = [TfidfLogReg(), get_family("tfidf-svm")]
    task = TextClassification()
    searched = search_many(
        families, texts, targets, sorted(set(targets)), "accuracy", folds=2, seed=0, n_jobs=1, task=task
    )
    found = searched.results["tfidf-logreg"]
    assert searched.results["tfidf-svm"].start is None
    featurizer, features = searched.features[TfidfLogReg.features_key]
    coef, intercept = found.start
    assert coef.shape == (len(set(targets)), features.shape[1]) and coef.any() and intercept.shape == (INTENTS,)
    warm = TfidfLogReg().fit_head(features, targets, found.params, 0, start=found.start)
    cold = TfidfLogReg().fit_head(features, targets, found.params, 0)
    assert warm.n_iter_[0] < cold.n_iter_[0], (warm.n_iter_, cold.n_iter_)
    held = featurizer.transform(test["text"].tolist())
    assert np.mean(warm.predict(held) == cold.predict(held)) >= 0.98
