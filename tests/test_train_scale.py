"""Training that scales: `shoal train` says where its time went, and a large training set is searched on a sample
(the final fit, the label audit's row numbers and the test-set evaluation still on every row). The sizes at which
the rules kick in are lowered for these small real datasets (SMS spam, California housing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import read_csv, spam_model, write_rows
from shoal import fleet
from shoal.data.audit import LABEL_ISSUES_FILE
from shoal.data.ingest import ingest_file
from shoal.families.base import read_json
from shoal.families.runtime.text_features import min_df, tfidf_features
from shoal.families.tfidf_logreg import TfidfLogReg
from shoal.families.tfidf_svm import calibration_folds
from shoal.tasks.regression.kind import Regression
from shoal.tasks.text_classification.kind import SAMPLE_PER_LABEL, TextClassification
from shoal.train.search import search_many
from shoal.train.trainer import _load_data, train_models

TASK = TextClassification()
FAMILIES = ["majority", "tfidf-logreg", "tfidf-svm"]
#: the steps every trained candidate reports, in order
STEPS = ["search", "final_fit", "label_audit", "save", "evaluation", "peak_rss", "latency", "register"]


def test_shoal_train_reports_where_the_time_went_per_step_and_family(
    make_workspace, sms: pd.DataFrame, tmp_path: Path
) -> None:
    ws = make_workspace({"spam": spam_model(families=FAMILIES)}, evaluation={"latency_calls": 20, "measure_rss": True})
    ingest_file(ws, "spam", write_rows(tmp_path / "spam.csv", sms.head(600)))
    done = subprocess.run(
        [sys.executable, "-m", "shoal", "train", "-w", str(ws.root)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    time_line = next(line for line in out.splitlines() if line.strip().startswith("time:"))
    for step in ("load data", "search", "final fits", "latency and register", "gate"):
        assert f"{step} " in time_line, time_line
    assert "seconds per family" in out
    table = out[out.index("seconds per family") :]
    for row in ("search", "features (shared)", "final fit", "label audit", "save", "evaluation", "peak rss", "latency"):
        assert any(line.split("│")[1].strip() == row for line in table.splitlines() if line.count("│") > 2), row
    for family in FAMILIES:
        assert family in table.splitlines()[1] + table.splitlines()[2]  # the header names each family

    versions = {v.family: v for v in ws.registry.versions("spam")}
    assert set(versions) == set(FAMILIES)
    for family, version in versions.items():
        phases = version.metrics.phases
        assert phases is not None and all(seconds >= 0 for seconds in phases.values())
        assert [step for step in STEPS if step in phases] == [step for step in STEPS if step != "register"]
        assert ("shared_features" in phases) == family.startswith("tfidf")
        assert phases["peak_rss"] >= 0 and version.metrics.profile.peak_rss_mb is not None
    # the TF-IDF families' own search fits take longer than the majority floor's
    assert versions["tfidf-svm"].metrics.phases["search"] > versions["majority"].metrics.phases["search"]
    shown = json.loads(
        subprocess.run(
            [sys.executable, "-m", "shoal", "eval", "spam", "1", "--json", "-w", str(ws.root)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout
    )
    assert shown["phases"] == versions[shown["family"]].metrics.phases


def test_the_report_times_each_step_of_a_training(make_workspace, sms: pd.DataFrame, tmp_path: Path) -> None:
    ws = make_workspace({"spam": spam_model(families=["majority", "tfidf-logreg"])}, n_jobs=1)
    ingest_file(ws, "spam", write_rows(tmp_path / "spam.csv", sms.head(300)))
    [report] = train_models(ws)
    assert list(report.phases) == ["load_data", "prepare", "search", "final_fits", "latency_and_register", "gate"]
    assert sum(report.phases.values()) <= report.seconds + 1e-6
    for candidate in report.candidates:
        assert candidate.phases["register"] >= 0 and candidate.phases["latency"] > 0
        assert candidate.version is not None and "register" not in candidate.version.metrics.phases
    # a second training on the same data reuses every version: nothing is searched, fitted or timed
    [again] = train_models(ws)
    assert all(c.reused and not c.phases for c in again.candidates)
    assert "search" not in again.phases


def test_a_classifiers_search_sample_keeps_each_labels_share_and_every_label() -> None:
    targets = ["a"] * 6000 + ["b"] * 3000 + ["c"] * 950 + ["d"] * 50 + ["e"] * 20
    rows = TASK.search_sample(targets, 2000, seed=0)
    assert rows is not None and np.all(np.diff(rows) > 0)  # sorted, each row once
    counts = Counter(targets[i] for i in rows)
    assert counts["a"] == pytest.approx(6000 * 2000 / len(targets), abs=1)
    assert counts["b"] == pytest.approx(3000 * 2000 / len(targets), abs=1)
    assert counts["c"] == max(SAMPLE_PER_LABEL, round(950 * 2000 / len(targets)))
    assert counts["d"] == 50 and counts["e"] == 20  # rarer than the minimum: all of it
    assert np.array_equal(rows, TASK.search_sample(targets, 2000, seed=0))
    assert not np.array_equal(rows, TASK.search_sample(targets, 2000, seed=1))
    regression = Regression().search_sample(list(range(5000)), 1200, seed=0)
    assert regression is not None and len(regression) == 1200 and np.all(np.diff(regression) > 0)


def test_a_search_on_a_sample_fits_its_folds_on_sampled_rows_and_keeps_features_of_every_row(
    sms: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = sms.head(600)
    texts, labels = frame["text"].tolist(), frame["label"].tolist()
    fitted: list[int] = []
    original = TfidfLogReg.fit_features

    def counting(self: TfidfLogReg, inputs: Sequence[str]) -> tuple:
        fitted.append(len(inputs))
        return original(self, inputs)

    monkeypatch.setattr(TfidfLogReg, "fit_features", counting)
    family = TfidfLogReg()
    found = search_many(
        [family], texts, labels, sorted(set(labels)), "f1:spam", folds=2, seed=0, n_jobs=1, task=TASK, max_rows=200
    )
    result = found.results[family.name]
    counts = Counter(labels)  # 200 of 600 rows: a third of each label, but at least SAMPLE_PER_LABEL of spam
    expected = sum(min(n, max(SAMPLE_PER_LABEL, round(n / 3))) for n in counts.values())
    assert result.rows is not None and len(result.rows) == expected
    assert result.oof.shape == (len(result.rows), 2)
    assert sorted(fitted) == sorted([len(result.rows) // 2, len(result.rows) - len(result.rows) // 2, 600])
    _, features = found.features[family.features_key]
    assert features.shape[0] == 600  # the final fit's features: every training row
    # the out-of-fold probabilities are those of the sampled rows: each row's own label is likelier than not
    truth = np.array([sorted(set(labels)).index(labels[i]) for i in result.rows])
    assert np.mean(result.oof.argmax(axis=1) == truth) > 0.9
    everything = search_many(
        [family], texts, labels, sorted(set(labels)), "f1:spam", folds=2, seed=0, n_jobs=1, task=TASK, max_rows=600
    )
    assert everything.results[family.name].rows is None  # not more rows than the limit: all of them, as before


def test_a_large_training_set_is_searched_on_a_sample_and_fitted_on_every_row(
    make_workspace, sms: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fleet, "SEARCH_ROWS", 300)  # the default limit, lowered: 800 rows, a fifth of them test rows
    ws = make_workspace({"spam": spam_model(families=["majority", "tfidf-logreg"])}, n_jobs=1)
    rows = sms.head(800).copy()
    flipped = rows.index[rows["label"] == "ham"][:60]
    rows.loc[flipped, "label"] = "spam"  # mislabelled rows, so that the label audit lists some
    ingest_file(ws, "spam", write_rows(tmp_path / "spam.csv", rows), skip_invalid=True)  # their repeats disagree
    fits: list[int] = []
    original = TfidfLogReg.fit_head

    def counting(self: TfidfLogReg, features, targets, params, seed, start=None):  # type: ignore[no-untyped-def]
        fits.append(len(targets))
        return original(self, features, targets, params, seed, start)

    monkeypatch.setattr(TfidfLogReg, "fit_head", counting)
    [report] = train_models(ws)
    data = _load_data(ws, "spam", ws.model("spam"))
    n_train = len(data.train.inputs)
    assert n_train > 300
    assert fits == [n_train]  # the final fit (the search's heads are `fit_heads`): every training row
    assert any("a sample of" in note and f"of the {n_train:,} training rows" in note for note in report.notes)
    for version in ws.registry.versions("spam"):
        cv = version.metrics.cv
        assert cv is not None and cv.rows is not None and 300 <= cv.rows <= 320  # each label's share, rounded
        assert version.metrics.n_train == n_train
        assert version.metrics.n_test == len(data.test.inputs)  # evaluated on the whole frozen test set
    logreg = next(v for v in ws.registry.versions("spam") if v.family == "tfidf-logreg")
    issues = read_json(ws.registry.artifacts.open(logreg.artifact_uri, logreg.checksum) / LABEL_ISSUES_FILE)
    assert issues
    for issue in issues:  # numbered as rows of the whole training set
        assert data.train.inputs[issue["row"]] == issue["text"] and data.train.targets[issue["row"]] == issue["given"]

    # the fleet file's search_rows wins over the default; below it the search uses every row
    wide = make_workspace({"spam": spam_model(families=["tfidf-logreg"], search_rows=5000)}, n_jobs=1)
    ingest_file(wide, "spam", write_rows(tmp_path / "spam.csv", sms.head(800)))
    train_models(wide)
    [version] = wide.registry.versions("spam")
    assert version.metrics.cv is not None and version.metrics.cv.rows is None


def test_a_regressors_intervals_come_from_the_sampled_rows_residuals(
    make_workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fleet, "SEARCH_ROWS", 400)
    housing = read_csv("california_housing/housing.csv").head(1000)
    ws = make_workspace(
        {"house": {"task": "regression", "target_column": "median_house_value", "families": ["mean", "ridge"]}},
        n_jobs=1,
    )
    ingest_file(ws, "house", write_rows(tmp_path / "house.csv", housing))
    [report] = train_models(ws)
    assert all(c.error is None for c in report.candidates), [c.error for c in report.candidates]
    for version in ws.registry.versions("house"):
        assert version.metrics.cv is not None and version.metrics.cv.rows == 400
        assert 0.5 < version.metrics.scores["interval_coverage"] <= 1.0


def test_a_term_must_occur_in_one_text_in_ten_thousand_from_twenty_thousand_texts() -> None:
    assert [min_df(n) for n in (500, 1999, 2000, 13_240, 20_000, 20_001, 45_000)] == [1, 1, 2, 2, 2, 3, 5]
    union = tfidf_features(45_000)
    assert [part.min_df for _, part in union.transformer_list] == [5, 5]


def test_the_svm_calibrates_on_two_folds_from_twenty_thousand_rows() -> None:
    """Fewer, larger calibration folds for a large training set: 2 SVM fits on halves instead of 3 on two thirds
    (Banking77 and TweetEval, 10,000-13,000 texts, keep 3); never more folds than the rarest class has rows."""
    balanced = [f"c{i % 20}" for i in range(19_999)]
    assert calibration_folds(balanced) == 3
    assert calibration_folds([*balanced, "c0"]) == 2
    assert calibration_folds([*["a"] * 100, "b", "b"]) == 2
