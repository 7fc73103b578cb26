"""What makes training fast must not change what it produces: the TF-IDF features shared between settings and
families give the same out-of-fold and final predictions as each pipeline fitted on its own; latency is timed
only after every fit, with the pool idle; a time budget stops the timed calls; the gate reuses a version's stored
test outputs only on exactly the rows they were computed on."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

import shoal.train.trainer as trainer_module
from conftest import spam_model, write_rows
from processes import wait_for
from shoal import fleet
from shoal.data import sets
from shoal.data.ingest import ingest_file
from shoal.evaluate import evaluator
from shoal.evaluate.profile import MIN_CALLS, PeakRss, latency
from shoal.families import Predictor, get_family
from shoal.families.base import read_json
from shoal.families.runtime.text_features import tfidf_features
from shoal.families.tfidf_logreg import TfidfLogReg
from shoal.families.tfidf_svm import TfidfSvm
from shoal.gate import OUTPUTS_FILE
from shoal.tasks.text_classification.kind import TextClassification, align
from shoal.train import candidates, executor
from shoal.train.search import search_many, start_pool
from shoal.train.trainer import _load_data, train_models

TASK = TextClassification()


def reference(
    family: str, texts: list[str], labels: list[str], params: dict, seed: int, *, warm_from: Sequence[dict] = ()
) -> Pipeline:
    """The pipeline as each TF-IDF family fitted it before features were shared: its own vectorizer fit. A logistic
    regression in the search starts from the solutions of the settings `warm_from` (the grid's earlier ones)."""
    if family == "tfidf-logreg":
        head = LogisticRegression(C=params["C"], max_iter=300, random_state=seed, warm_start=bool(warm_from))
        pipeline = Pipeline([("features", tfidf_features(len(texts))), ("clf", head)])
        for earlier in warm_from:  # the same rows give the same vectorizer, so each fit starts from the last
            pipeline.set_params(clf__C=earlier["C"]).fit(texts, labels)
        return pipeline.set_params(clf__C=params["C"]).fit(texts, labels)
    counts = pd.Series(labels).value_counts()
    folds = max(2, min(3, int(counts.min())))
    head = CalibratedClassifierCV(LinearSVC(C=params["C"], random_state=seed), cv=folds, method="sigmoid")
    return Pipeline([("features", tfidf_features(len(texts))), ("clf", head)]).fit(texts, labels)


@pytest.fixture(scope="module")
def rows(sms: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
    frame = sms.head(400)
    return frame["text"].tolist(), frame["label"].tolist(), sorted(frame["label"].unique())


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_shared_features_give_each_family_the_same_out_of_fold_predictions_as_its_own_pipeline(
    rows: tuple[list[str], list[str], list[str]], n_jobs: int
) -> None:
    texts, labels, label_set = rows
    families = [get_family("tfidf-logreg"), get_family("tfidf-svm")]
    found = search_many(families, texts, labels, label_set, "f1:spam", folds=3, seed=0, n_jobs=n_jobs, task=TASK)
    assert found.failed == {} and set(found.features) == {"tfidf-word-char"}
    x, y = np.array(texts, dtype=object), np.array(labels, dtype=object)
    for family in families:
        result = found.results[family.name]
        grid = family.grid(len(texts))
        assert [s["params"] for s in result.scores] == grid
        earlier = grid[: grid.index(result.params)]
        oof = np.zeros((len(texts), len(label_set)))
        for train, held in TASK.cv_folds(labels, 3, 0):  # each fold's vectorizer fit on its training part only
            model = reference(family.name, x[train].tolist(), y[train].tolist(), result.params, 0, warm_from=earlier)
            oof[held] = align(model.predict_proba(x[held].tolist()), [str(c) for c in model.classes_], label_set)
        np.testing.assert_allclose(result.oof, oof, rtol=1e-6, atol=1e-9)


def test_a_final_fit_on_the_shared_features_predicts_as_its_own_pipeline(
    rows: tuple[list[str], list[str], list[str]], sms: pd.DataFrame
) -> None:
    texts, labels, label_set = rows
    unseen = sms.iloc[400:600]["text"].tolist()
    for family in (get_family("tfidf-logreg"), get_family("tfidf-svm")):
        found = search_many([family], texts, labels, label_set, "f1:spam", folds=3, seed=0, n_jobs=1, task=TASK)
        featurizer, features = found.features[family.features_key]
        params = found.results[family.name].params
        shared = family.assemble(featurizer, family.fit_head(features, labels, params, 0))
        alone = reference(family.name, texts, labels, params, 0)
        np.testing.assert_allclose(shared.predict_proba(unseen), alone.predict_proba(unseen), rtol=1e-6, atol=1e-9)
        assert shared.predict(unseen) == [str(p) for p in alone.predict(unseen)]


def _pool() -> set[int]:
    """The pids of this process's training pool (loky's worker processes)."""
    return {c.pid for c in psutil.Process().children() if any("popen_loky_posix" in part for part in c.cmdline())}


def test_a_pool_started_ahead_is_the_pool_the_search_runs_on(rows: tuple[list[str], list[str], list[str]]) -> None:
    texts, labels, label_set = rows
    family = get_family("tfidf-logreg")
    ready = start_pool(2, [TASK, family])  # what a job process does while it waits for its job
    started = _pool()
    assert len(started) == 2 and ready <= started
    found = search_many([family], texts, labels, label_set, "f1:spam", folds=3, seed=0, n_jobs=2, task=TASK)
    assert found.failed == {} and _pool() == started  # the same processes: none started again


def test_each_logistic_regression_setting_of_the_search_starts_from_the_previous_ones_solution(
    rows: tuple[list[str], list[str], list[str]],
) -> None:
    texts, labels, _ = rows
    family = TfidfLogReg()
    grid = family.grid(len(texts))
    _, features = family.fit_features(texts)
    heads = family.fit_heads(features, labels, grid, 0)
    cold = [family.fit_head(features, labels, params, 0) for params in grid]
    assert [h.C for h in heads] == [p["C"] for p in grid]
    np.testing.assert_array_equal(heads[0].coef_, cold[0].coef_)  # the first setting starts from zero
    for warm, alone in zip(heads[1:], cold[1:], strict=True):
        assert warm.n_iter_[0] < alone.n_iter_[0]  # fewer iterations to the same optimum (within L-BFGS's tolerance)
        assert np.mean(warm.predict(features) == alone.predict(features)) >= 0.98
        assert np.abs(warm.predict_proba(features) - alone.predict_proba(features)).mean() < 0.01
    assert heads[0].coef_ is not heads[1].coef_ and not np.array_equal(heads[0].coef_, heads[1].coef_)


def test_the_features_are_fitted_once_per_fold_and_once_on_all_rows_for_every_setting_and_family(
    rows: tuple[list[str], list[str], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    texts, labels, label_set = rows
    fits: list[int] = []
    for cls in (TfidfLogReg, TfidfSvm):
        original = cls.fit_features

        def counting(self, inputs: Sequence[str], original=original) -> tuple:  # type: ignore[no-untyped-def]
            fits.append(len(inputs))
            return original(self, inputs)

        monkeypatch.setattr(cls, "fit_features", counting)
    families = [get_family("tfidf-logreg"), get_family("tfidf-svm")]
    search_many(families, texts, labels, label_set, "f1:spam", folds=3, seed=0, n_jobs=1, task=TASK)
    # 2 families x 2 settings x 3 folds = 12 fits each fitted their own vectorizer before; now 3 folds + all rows
    assert sorted(fits) == sorted([len(t) for t, _ in TASK.cv_folds(labels, 3, 0)] + [len(texts)])


def test_latency_is_timed_after_every_final_fit_with_nothing_else_running(
    make_workspace, sms: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = make_workspace({"spam": spam_model(families=["majority", "tfidf-logreg", "tfidf-svm"])}, n_jobs=1)
    ingest_file(ws, "spam", write_rows(tmp_path / "spam.csv", sms.head(300)))
    order: list[str] = []
    build, profile = candidates._build, evaluator.profile

    def building(*args, **kwargs):  # type: ignore[no-untyped-def]
        built = build(*args, **kwargs)
        order.append(f"built {built.family}")
        return built

    def timing(predictor: Predictor, *args, **kwargs):  # type: ignore[no-untyped-def]
        order.append("timed")
        return profile(predictor, *args, **kwargs)

    monkeypatch.setattr(candidates, "_build", building)
    monkeypatch.setattr(evaluator, "profile", timing)
    [report] = train_models(ws)
    assert all(c.version is not None for c in report.candidates), report.candidates
    assert order == ["built majority", "built tfidf-logreg", "built tfidf-svm", "timed", "timed", "timed"]
    for candidate in report.candidates:
        profile_ = candidate.version.metrics.profile
        assert profile_.latency_calls == 20 and profile_.p95_ms_batch1 > 0


def test_a_model_without_cv_folds_is_searched_on_two_folds_from_large_training_data(
    make_workspace, sms: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fleet, "LARGE_TRAINING_ROWS", 200)  # 300 rows, a fifth held out for the test set
    ws = make_workspace({"spam": spam_model(families=["majority"])}, n_jobs=1)
    ingest_file(ws, "spam", write_rows(tmp_path / "spam.csv", sms.head(300)))
    folds: list[int] = []

    def searching(*args, **kwargs):  # type: ignore[no-untyped-def]
        folds.append(kwargs["folds"])
        return search_many(*args, **kwargs)

    monkeypatch.setattr(executor, "search_many", searching)
    train_models(ws)
    [version] = ws.registry.versions("spam")
    assert folds == [2] and version.metrics.cv.folds == 2 and version.metrics.n_train >= 200


class Slow(Predictor):
    def __init__(self) -> None:
        self.labels = ["a"]

    def predict_proba(self, inputs: Sequence[str]) -> np.ndarray:
        time.sleep(0.002)
        return np.ones((len(inputs), 1))

    def save(self, folder: Path) -> None:
        raise NotImplementedError

    def n_parameters(self) -> int:
        return 0


def test_a_time_budget_stops_the_timed_calls_but_never_before_the_minimum() -> None:
    budgeted = latency(Slow(), ["x"] * 10, calls=1000, seconds=0.01)
    assert budgeted["latency_calls"] == MIN_CALLS
    assert latency(Slow(), ["x"] * 10, calls=30, seconds=0.01)["latency_calls"] == 30  # fewer asked: all made
    assert latency(Slow(), ["x"] * 10, calls=60, seconds=None)["latency_calls"] == 60


def test_the_gate_reuses_stored_test_outputs_only_on_exactly_the_rows_they_were_computed_on(
    make_workspace, sms: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = make_workspace({"spam": spam_model(families=["tfidf-logreg"])}, n_jobs=1)
    ingest_file(ws, "spam", write_rows(tmp_path / "first.csv", sms.head(300)))
    train_models(ws)
    [first] = ws.registry.versions("spam")
    test = _load_data(ws, "spam", ws.model("spam")).test
    folder = ws.registry.artifacts.open(first.artifact_uri, first.checksum)
    stored = read_json(folder / OUTPUTS_FILE)
    predictor = ws.load_predictor(first)
    np.testing.assert_array_equal(TASK.restored_outputs(stored, test), TASK.gate_outputs(predictor, test))
    moved = sets.TestSet(test.inputs[::-1], test.truth[::-1], test.hash, test.labels)  # same rows, another order
    assert TASK.restored_outputs(stored, moved) is None

    loads: list[str] = []
    load = TfidfLogReg.load

    def counting(self, folder: Path) -> Predictor:  # type: ignore[no-untyped-def]
        loads.append(folder.name)
        return load(self, folder)

    monkeypatch.setattr(TfidfLogReg, "load", counting)
    # the final fit's head start loads the production version too (`trainer._production`): this test counts the gate's
    monkeypatch.setattr(trainer_module, "_production", lambda *_: {})
    # more training rows, the same test rows: the gate compares stored outputs, loading no version
    ingest_file(ws, "spam", write_rows(tmp_path / "more.csv", sms.iloc[300:600]), split="train")
    [again] = train_models(ws)
    assert again.decision is not None and [c.error for c in again.candidates] == [None]
    assert loads == []
    # new test rows: the stored outputs are of other rows, so the gate runs the versions again
    ingest_file(ws, "spam", write_rows(tmp_path / "test.csv", sms.iloc[600:800]), split="test")
    [third] = train_models(ws)
    assert third.decision is not None and [c.error for c in third.candidates] == [None]
    assert len(loads) >= 1


def test_peak_rss_is_measured_in_the_background_and_a_broken_artifact_gives_none(tmp_path: Path) -> None:
    family = get_family("majority")
    early = PeakRss("majority", tmp_path, ["a text"])  # started before the artifact exists, as beside a final fit
    unknown = PeakRss("no-such-family", tmp_path, ["a text"])
    family.fit(["a", "b", "c"], ["x", "y", "x"], {}, 0).save(tmp_path)
    running = PeakRss("majority", tmp_path, ["a text"])
    broken = PeakRss("majority", tmp_path / "missing", ["a text"])
    peak = running.result()
    assert peak is not None and 10 < peak < 2000
    assert broken.result() is None
    early_peak = early.result()
    assert early_peak is not None and 10 < early_peak < 2000
    # it imports its family before it waits for the inputs: an unknown one ends it with nothing sent
    wait_for(lambda: unknown._process.poll() is not None, 60, "the process with an unknown family ending")
    assert unknown.result() is None
