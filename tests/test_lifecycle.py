"""Train -> evaluate -> gate on real Banking77 data: the gate refuses what is not better, accepts what is,
rollback restores, failures stay isolated, and a killed `shoal train` leaves no half-written version."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import write_rows
from processes import POINTS, assert_stopped_at, assert_store_consistent, paused_pid
from shoal.data.ingest import ingest_file
from shoal.faults import PAUSE_AT_ENV, PAUSE_FILE_ENV
from shoal.registry import PRODUCTION
from shoal.train.trainer import train_models

INTENTS = 12


@pytest.fixture(scope="module")
def subset(banking) -> tuple[pd.DataFrame, pd.DataFrame]:
    train, test = banking
    intents = sorted(train["label"].unique())[:INTENTS]
    return train[train["label"].isin(intents)], test[test["label"].isin(intents)]


def bank_model(families: list[str]) -> dict:
    return {"task": "text-classification", "metric": "accuracy", "families": families}


def test_gate_promotes_only_significant_gains_and_rollback_restores(make_workspace, subset, tmp_path: Path) -> None:
    train, test = subset
    ws = make_workspace({"bank": bank_model(["majority", "tfidf-logreg"])})
    ingest_file(ws, "bank", write_rows(tmp_path / "test.csv", test), split="test")
    ingest_file(ws, "bank", write_rows(tmp_path / "small.csv", train.groupby("label").head(5)), split="train")

    [first] = train_models(ws)
    assert first.decision is not None and first.decision.promote, first.decision
    assert "majority floor" in first.decision.reason
    v_small = ws.registry.alias("bank")
    assert ws.registry.version("bank", v_small).family == "tfidf-logreg"

    # the same training rows again, in another order: a new drop, the same data -> refused
    shuffled = train.groupby("label").head(5).sample(frac=1.0, random_state=1)
    ingest_file(ws, "bank", write_rows(tmp_path / "again.csv", shuffled), split="train")
    [same] = train_models(ws)
    assert same.decision is not None and not same.decision.promote
    assert "same predictions" in same.decision.reason
    assert ws.registry.alias("bank") == v_small

    # training again with nothing new reuses the versions and changes nothing
    before = len(ws.registry.versions("bank"))
    [noop] = train_models(ws)
    assert all(c.reused for c in noop.candidates) and len(ws.registry.versions("bank")) == before
    assert ws.registry.alias("bank") == v_small

    # a drop with substantially more data -> significantly better -> promoted
    ingest_file(ws, "bank", write_rows(tmp_path / "big.csv", train.groupby("label").head(60)), split="train")
    [bigger] = train_models(ws)
    assert bigger.decision is not None and bigger.decision.promote, bigger.decision
    v_big = ws.registry.alias("bank")
    assert v_big != v_small and bigger.decision.delta > 0.03 and bigger.decision.p_value < 0.05
    assert (
        ws.registry.version("bank", v_big).metrics.scores["accuracy"]
        > ws.registry.version("bank", v_small).metrics.scores["accuracy"]
    )

    assert ws.registry.rollback("bank") == v_small
    assert ws.registry.alias("bank", PRODUCTION) == v_small
    kinds = [e.kind for e in ws.registry.events("bank")]
    assert {"ingested", "trained", "promoted", "rejected", "rolled_back"} <= set(kinds)


def test_a_retrain_on_the_same_data_with_another_seed_is_decided_by_the_paired_test(
    make_workspace, subset, tmp_path: Path
) -> None:
    """The same training rows in another order, with another seed: the SVM's solver and calibration folds move a
    little, so the challenger's predictions differ from the champion's (the identical-predictions shortcut does
    not apply) and McNemar's test finds the small gain not significant."""
    train, test = subset
    ws = make_workspace({"bank": bank_model(["tfidf-svm"])}, seed=1)
    rows = train.groupby("label").head(5)
    ingest_file(ws, "bank", write_rows(tmp_path / "test.csv", test), split="test")
    ingest_file(ws, "bank", write_rows(tmp_path / "train.csv", rows.sample(frac=1.0, random_state=1)), split="train")
    [first] = train_models(ws)
    assert first.decision is not None and first.decision.promote, first.decision
    champion = ws.registry.alias("bank")

    ws.fleet.workspace.seed = 2
    ingest_file(ws, "bank", write_rows(tmp_path / "again.csv", rows.sample(frac=1.0, random_state=2)), split="train")
    [again] = train_models(ws)
    [candidate] = again.candidates
    assert candidate.version is not None and not candidate.reused
    assert candidate.version.params == ws.registry.version("bank", champion).params  # the same recipe
    decision = again.decision
    assert decision is not None and not decision.promote
    assert decision.reason.startswith("kept the champion: not significant at alpha=0.05"), decision.reason
    assert decision.test == "mcnemar" and decision.delta > 0 and 0.05 < decision.p_value < 1
    assert f"p={decision.p_value:.3g}" in decision.reason
    assert ws.registry.alias("bank") == champion
    rejected = [e for e in ws.registry.events("bank") if e.kind == "rejected"][-1]
    assert rejected.version == candidate.version.number and rejected.payload["champion"] == champion
    assert rejected.payload["decision"]["p_value"] == decision.p_value


def test_a_worse_family_on_the_same_data_is_refused(make_workspace, subset, tmp_path: Path) -> None:
    train, test = subset
    ws = make_workspace({"bank": bank_model(["tfidf-logreg"])})
    ingest_file(ws, "bank", write_rows(tmp_path / "test.csv", test), split="test")
    ingest_file(ws, "bank", write_rows(tmp_path / "train.csv", train.groupby("label").head(5)), split="train")
    train_models(ws)
    champion = ws.registry.alias("bank")
    ws.fleet.models["bank"].families = ["tfidf-svm"]
    [report] = train_models(ws)
    assert report.decision is not None and not report.decision.promote
    assert report.decision.reason.startswith("kept the champion")
    assert ws.registry.alias("bank") == champion
    rejected = [e for e in ws.registry.events("bank") if e.kind == "rejected"]
    assert rejected and "Δ" in rejected[-1].message and "CI" in rejected[-1].message


def test_failures_are_isolated_per_family_and_per_model(make_workspace, subset, tmp_path: Path) -> None:
    train, test = subset
    ws = make_workspace({"bank": bank_model(["tfidf-svm", "tfidf-logreg"]), "empty": bank_model(["majority"])})
    # one intent with a single training row: the calibrated SVM cannot fit, logistic regression can
    lonely = train["label"].unique()[0]
    rows = pd.concat(
        [train[train["label"] != lonely].groupby("label").head(8), train[train["label"] == lonely].head(1)]
    )
    ingest_file(ws, "bank", write_rows(tmp_path / "train.csv", rows), split="train")
    ingest_file(ws, "bank", write_rows(tmp_path / "test.csv", test), split="test")
    reports = {r.model: r for r in train_models(ws)}
    svm, logreg = reports["bank"].candidates
    assert svm.error is not None and svm.version is None
    assert logreg.version is not None and ws.registry.alias("bank") == logreg.version.number
    assert reports["empty"].error is not None and "no data" in reports["empty"].error
    failed = [e for e in ws.registry.events("bank") if e.kind == "failed"]
    assert failed and "tfidf-svm failed" in failed[0].message


@pytest.mark.timeout(600)  # a fresh `shoal train` to its pause point, then a training: minutes on a loaded machine
@pytest.mark.parametrize("point", POINTS)
def test_kill_minus_9_of_shoal_train_at_each_point_leaves_a_consistent_store(
    make_workspace, subset, registry_url: str, tmp_path: Path, point: str
) -> None:
    train, test = subset
    families = ["majority", "tfidf-logreg"]
    ws = make_workspace({"bank": bank_model(families)}, registry=registry_url, n_jobs=1)
    ingest_file(ws, "bank", write_rows(tmp_path / "train.csv", train.groupby("label").head(20)), split="train")
    ingest_file(ws, "bank", write_rows(tmp_path / "test.csv", test), split="test")
    pause = tmp_path / "paused"
    env = {**os.environ, PAUSE_AT_ENV: point, PAUSE_FILE_ENV: str(pause)}
    command = [sys.executable, "-m", "shoal", "train", "-w", str(ws.root)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        assert paused_pid(pause, 120, point) == process.pid
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # no cleanup at all
        process.wait(timeout=30)
    assert_stopped_at(ws, "bank", point, families)
    assert_store_consistent(ws, "bank")

    # the next run completes, reusing what the killed run finished, and removes what it left in staging
    [report] = train_models(ws)
    assert report.error is None and ws.registry.alias("bank") is not None
    assert_store_consistent(ws, "bank")
    assert not any((ws.artifact_root / ".staging").iterdir())
    assert sorted(v.family for v in ws.registry.versions("bank")) == families  # none made twice


@pytest.mark.timeout(600)  # two fresh `shoal train` processes sharing two cores: minutes on a loaded machine
def test_two_train_processes_at_once_both_succeed_for_every_family_with_no_duplicates(
    make_workspace, subset, registry_url: str, tmp_path: Path
) -> None:
    train, test = subset
    families = ["majority", "tfidf-logreg"]
    ws = make_workspace({"bank": bank_model(families)}, registry=registry_url)
    ingest_file(ws, "bank", write_rows(tmp_path / "train.csv", train.groupby("label").head(20)), split="train")
    ingest_file(ws, "bank", write_rows(tmp_path / "test.csv", test), split="test")
    command = [sys.executable, "-m", "shoal", "train", "-w", str(ws.root)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=540) for p in processes]
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, out + err
        assert "locked" not in out + err and "failed" not in out + err
    failed = [e.message for e in ws.registry.events("bank") if e.kind == "failed"]
    assert failed == []  # no family failed in either process
    versions = ws.registry.versions("bank")
    assert sorted(v.family for v in versions) == families
    assert ws.registry.alias("bank") in {v.number for v in versions}


def test_families_that_cannot_meet_the_budgets_are_skipped_with_a_reason(make_workspace, subset, tmp_path) -> None:
    train, test = subset
    model = bank_model(["majority", "tfidf-logreg", "tfidf-svm"])
    model["gate"] = {"max_p95_latency_ms": 5}
    model["max_train_seconds"] = 1
    ws = make_workspace({"bank": model})
    ingest_file(ws, "bank", write_rows(tmp_path / "train.csv", train.groupby("label").head(20)), split="train")
    ingest_file(ws, "bank", write_rows(tmp_path / "test.csv", test), split="test")
    [report] = train_models(ws)
    skipped = {c.family: c.skipped for c in report.candidates if c.skipped}
    assert set(skipped) == {"tfidf-logreg", "tfidf-svm"}
    assert "expected training" in skipped["tfidf-logreg"] and "budget 1 s" in skipped["tfidf-logreg"]
    assert "p95 latency 8.00 ms > budget 5 ms" in skipped["tfidf-svm"]
    assert [v.family for v in ws.registry.versions("bank")] == ["majority"]
    assert [e.kind for e in ws.registry.events("bank")].count("skipped") == 2
