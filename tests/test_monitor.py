"""Drift tests and the label-free accuracy estimate, on real texts and rows from the shared data."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from conftest import DATA, read_csv
from serve_fixtures import SPAM_ROWS, Trained, copy_workspace
from shoal.cli import app
from shoal.data.assembled import assembled
from shoal.data.ingest import ingest_file
from shoal.monitor import DRIFT_EVENT, watch
from shoal.monitor.drift import Reference, check, level_for_budget, other_script_share
from shoal.monitor.estimate import estimated_accuracy, live_shortfall_p, shortfall_p
from shoal.monitor.stats import benjamini_hochberg, chi2_test, mmd_test
from shoal.registry import PRODUCTION
from shoal.registry.database import now
from shoal.registry.jobs import JobQueue
from shoal.registry.prediction_log import PredictionLog
from shoal.tasks import get_codec
from shoal.worker.drift import DriftChecks
from shoal.worker.triggers import Triggers, schedule_slot
from shoal.workspace import Workspace


def test_benjamini_hochberg_finds_what_the_step_up_rule_finds() -> None:
    p = [0.01, 0.04, 0.03, 0.20]  # sorted: 0.01, 0.03, 0.04, 0.20 against level * rank / 4
    assert benjamini_hochberg(p, 0.05).tolist() == [True, False, False, False]  # 0.03 > 0.025, 0.04 > 0.0375
    assert benjamini_hochberg(p, 0.2).tolist() == [True, True, True, True]
    assert benjamini_hochberg(p, 0.1).tolist() == [True, True, True, False]
    assert benjamini_hochberg([], 0.05).tolist() == []


def test_the_mmd_permutation_test_holds_its_level_and_sees_a_shift() -> None:
    rng = np.random.default_rng(0)
    null = [mmd_test(rng.normal(size=(60, 3)), rng.normal(size=(40, 3)), permutations=99, seed=s)[1] for s in range(60)]
    assert 0.0 < np.mean(np.array(null) <= 0.1) <= 0.25  # ~0.10 expected; 60 draws
    shifted = mmd_test(rng.normal(size=(60, 3)), rng.normal(0.8, 1.0, size=(40, 3)), permutations=199, seed=0)
    assert shifted[1] <= 0.01
    # beyond every relabelling, a fitted tail goes below the permutation floor: a small level can still be reached
    far = mmd_test(rng.normal(size=(60, 3)), rng.normal(3.0, 1.0, size=(40, 3)), permutations=99, seed=0)
    assert far[1] < 1e-4


def test_chi2_of_one_category_is_no_evidence() -> None:
    assert chi2_test(["a"] * 5, ["a"] * 3) == (0.0, 1.0)
    assert chi2_test(["a"] * 50 + ["b"] * 50, ["a"] * 50)[1] < 1e-6


def test_chi2_with_many_rare_categories_holds_its_level() -> None:
    """77 skewed labels, windows of 200: more than a fifth of the expected counts are below 5, where the asymptotic
    p-value fires about twice as often as its level (0.11 here at 0.05); the simulated one holds it."""
    rng = np.random.default_rng(3)
    labels = np.array([f"intent {i}" for i in range(77)])
    shares = rng.dirichlet(np.full(77, 0.3))
    windows = 200
    fired = sum(
        chi2_test(list(rng.choice(labels, 3000, p=shares)), list(rng.choice(labels, 200, p=shares)), seed=k)[1] < 0.05
        for k in range(windows)
    )
    assert 0.015 <= fired / windows <= 0.085, fired
    moved = rng.dirichlet(np.full(77, 0.3))  # a real shift: still far below the simulations' floor
    assert chi2_test(list(rng.choice(labels, 3000, p=shares)), list(rng.choice(labels, 200, p=moved)))[1] < 1e-6


def test_level_for_budget() -> None:
    assert level_for_budget(1, 168) == pytest.approx(1 / 168)
    with pytest.raises(ValueError, match="positive"):
        level_for_budget(0, 168)


@pytest.fixture(scope="module")
def shuffled_banking() -> pd.DataFrame:
    return read_csv("banking77/train.csv").sample(frac=1, random_state=0)


def test_texts_that_have_not_moved_pass_and_other_texts_alert(shuffled_banking: pd.DataFrame) -> None:
    train, held_out, traffic = (
        shuffled_banking.iloc[:6000],
        shuffled_banking.iloc[6000:8000],
        shuffled_banking.iloc[8000:],
    )
    reference = Reference.of_texts(train["text"].tolist(), held_out["label"].tolist(), size=300, seed=0)
    calm = traffic.iloc[:200]
    verdict = check(reference, calm["text"].tolist(), calm["label"].tolist(), level=0.01, min_samples=100)
    assert not verdict.drifted, verdict.summary()
    assert [f.test for f in verdict.findings] == [
        "text features (MMD)",
        "text length (KS)",
        "out-of-vocabulary rate (KS)",
        "non-Latin letter share (KS)",
        "predicted labels (chi²)",
    ]
    tweets = read_csv("tweeteval_offensive/test.csv")["text"].tolist()[:200]
    moved = check(reference, tweets, [], level=0.01, min_samples=100)
    fired = {f.test for f in moved.findings if f.fired}
    assert {"text features (MMD)", "out-of-vocabulary rate (KS)"} <= fired, moved.summary()
    few = traffic[traffic["label"].isin(sorted(traffic["label"].unique())[:5])]
    narrowed = check(reference, few["text"].tolist(), few["label"].tolist(), level=0.01, min_samples=50)
    assert "predicted labels (chi²)" in {f.test for f in narrowed.findings if f.fired}


def test_a_small_window_gets_no_verdict(shuffled_banking: pd.DataFrame) -> None:
    reference = Reference.of_texts(shuffled_banking["text"].tolist()[:1000], ["x"], size=100, seed=0)
    verdict = check(reference, shuffled_banking["text"].tolist()[:20], [], level=0.01, min_samples=100)
    assert not verdict.drifted and verdict.findings == []
    assert verdict.summary() == "20 inputs in the window; a verdict needs at least 100"


def test_a_scaled_column_alerts_on_that_column() -> None:
    frame = pd.read_csv(DATA / "california_housing" / "housing.csv").sample(frac=1, random_state=0)
    features = frame.drop(columns=["median_house_value"])
    reference = Reference.of_rows(features.iloc[:5000], [], size=500, seed=0)
    traffic = features.iloc[5000:5400].reset_index(drop=True)
    assert not check(reference, traffic, [], level=0.01, min_samples=100).drifted
    scaled = check(
        reference, traffic.assign(median_income=traffic["median_income"] * 1.3), [], level=0.01, min_samples=100
    )
    fired = {f.test for f in scaled.findings if f.fired}
    assert "column median_income (KS)" in fired and "column latitude (KS)" not in fired, scaled.summary()
    # a feature the traffic stopped sending, or sends empty: an alert naming it, never an error
    gone = check(
        reference, traffic.drop(columns=["households"]).assign(population=None), [], level=0.01, min_samples=100
    )
    fired = {f.test for f in gone.findings if f.fired}
    assert {"column households missing from every input", "column population missing from every input"} <= fired


def test_estimated_accuracy_follows_calibrated_confidence() -> None:
    rng = np.random.default_rng(0)
    confidences = rng.uniform(0.5, 1.0, size=4000)
    right = rng.uniform(size=4000) < confidences  # calibrated by construction
    estimate = estimated_accuracy(confidences)
    assert estimate.ci[0] <= right.mean() <= estimate.ci[1]
    assert estimate.accuracy == pytest.approx(0.75, abs=0.01)
    with pytest.raises(ValueError, match="no answers"):
        estimated_accuracy(np.array([]))


def test_unseen_texts_of_a_large_vocabulary_do_not_look_out_of_vocabulary(sms: pd.DataFrame) -> None:
    """The reference's own out-of-vocabulary rates are measured against the words of the *other* training texts:
    against all of them (its own words included) every new SMS would look out of vocabulary."""
    rows = sms.sample(frac=1, random_state=0)
    reference = Reference.of_texts(rows["text"].tolist()[:4000], [], size=400, seed=0)
    verdict = check(reference, rows["text"].tolist()[4000:4300], [], level=0.01, min_samples=100)
    assert not verdict.drifted, verdict.summary()


def _log_served(ws: Workspace, texts: list[str]) -> None:
    """Log `texts` with the production version's answers, as the server logs a request."""
    version = ws.registry.alias("spam", PRODUCTION)
    assert version is not None
    predictor = ws.load_predictor(ws.registry.version("spam", version))
    log = PredictionLog.for_registry(ws.registry)
    log.record("r1", "spam", version, texts, predictor.predict(texts))
    log.close()


def test_shoal_drift_checks_the_newest_logged_predictions(trained: Trained, tmp_path: Path, sms: pd.DataFrame) -> None:
    ws = copy_workspace(trained, tmp_path / "ws")
    runner = CliRunner()

    def drift(*options: str) -> Result:
        return runner.invoke(app, ["drift", "spam", "-w", str(ws.root), "--min-samples", "150", *options])

    few = drift()
    assert few.exit_code == 0 and "0 inputs in the window; a verdict needs at least 150" in few.output
    _log_served(ws, sms["text"].tolist()[SPAM_ROWS : SPAM_ROWS + 300])  # unseen SMS: the traffic has not moved
    calm = drift("--window", "300", "--json")
    assert calm.exit_code == 0, calm.output
    report = json.loads(calm.output)
    assert report["n"] == 300 and report["drifted"] is False
    names = [test["test"] for test in report["tests"]]
    assert len(names) == 6 and names[-1].startswith("estimated accuracy (CBPE) vs ")  # a classifier, calibrated
    _log_served(ws, read_csv("tweeteval_offensive/test.csv")["text"].tolist()[:300])  # tweets, not SMS
    moved = drift("--window", "300")
    assert moved.exit_code == 1, moved.output
    assert "drift in text features (MMD)" in moved.output


def test_each_task_reads_its_logged_predictions_for_the_drift_tests() -> None:
    rows, values = get_codec("regression").drift_view(
        ['{"rooms": 3, "city": "Oslo"}', '{"rooms": 5, "city": "Bergen"}'], ["2.5", "1e+06"]
    )  # type: ignore[misc]
    assert rows.to_dict("records") == [{"rooms": 3, "city": "Oslo"}, {"rooms": 5, "city": "Bergen"}]
    assert values == [2.5, 1e6]
    assert get_codec("text-classification").drift_view(["hi"], ["ham"]) == (["hi"], ["ham"])
    assert get_codec("forecasting").drift_view([], []) is None  # no input drift: its errors on realised values are
    # checked instead (tests/test_forecast_drift.py)


def test_the_quality_checks_fire_on_an_accuracy_shortfall() -> None:
    assert shortfall_p(np.full(300, 0.95), 0.85) > 0.5  # expected 0.95: no shortfall below 0.85
    assert shortfall_p(np.full(300, 0.70), 0.85) < 1e-6
    assert live_shortfall_p(90, 100, 0.85) > 0.05
    assert live_shortfall_p(60, 100, 0.85) < 1e-6


def test_wrong_feedback_labels_alert_on_live_accuracy(trained: Trained, tmp_path: Path, sms: pd.DataFrame) -> None:
    """Traffic like the training data, but users say the answers are wrong: only the live accuracy check fires."""
    ws = copy_workspace(trained, tmp_path / "ws")
    texts = sms["text"].tolist()[SPAM_ROWS : SPAM_ROWS + 200]
    _log_served(ws, texts)
    log = PredictionLog.for_registry(ws.registry)
    version = ws.registry.alias("spam", PRODUCTION)
    answers = dict(zip(texts, ws.load_predictor(ws.registry.version("spam", version)).predict(texts), strict=True))
    for position, text in enumerate(texts[:150]):
        log.add_feedback("spam", "r1", "spam" if answers[text] == "ham" else "ham", position)
    log.close()
    result = CliRunner().invoke(app, ["drift", "spam", "-w", str(ws.root), "--min-samples", "150", "--json"])
    assert result.exit_code == 1, result.output
    fired = [test["test"] for test in json.loads(result.output)["tests"] if test["fired"]]
    assert len(fired) == 1 and fired[0].startswith("live accuracy (150 labels) vs "), fired
    estimated = next(t for t in json.loads(result.output)["tests"] if t["test"].startswith("estimated accuracy"))
    assert estimated["statistic"] > 0.85 and not estimated["fired"]


def test_the_worker_tests_live_accuracy_again_only_on_new_feedback(
    trained: Trained, tmp_path: Path, sms: pd.DataFrame
) -> None:
    """Users say the answers are wrong: the worker alerts once; the next interval, with no new label, tests nothing
    on the same labels (no alert every hour until feedback arrives); new wrong labels alert again."""
    ws = copy_workspace(trained, tmp_path / "ws")
    fleet = yaml.safe_load(ws.fleet_path.read_text(encoding="utf-8"))
    fleet["models"]["spam"]["monitor"] = {"every": "1h", "window": 300, "min_samples": 150}
    ws.fleet_path.write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    ws.reload()
    texts = sms["text"].tolist()[SPAM_ROWS : SPAM_ROWS + 200]
    _log_served(ws, texts)
    version = ws.registry.alias("spam", PRODUCTION)
    answers = dict(zip(texts, ws.load_predictor(ws.registry.version("spam", version)).predict(texts), strict=True))
    log = PredictionLog.for_registry(ws.registry)

    def wrong(positions: range) -> None:
        for position in positions:
            log.add_feedback("spam", "r1", "spam" if answers[texts[position]] == "ham" else "ham", position)

    checks = DriftChecks(ws, Triggers(ws, JobQueue(ws.registry)))
    start = schedule_slot("1h", now())

    def live(hours: int) -> list[bool]:
        watched = checks.check("spam", at=start + timedelta(hours=hours))
        assert watched is not None and watched.verdict.pending is None
        return [f.fired for f in watched.verdict.findings if f.test.startswith("live accuracy")]

    wrong(range(100))
    assert live(1) == [True]
    assert live(2) == []  # the same 100 labels: not tested again
    wrong(range(100, 150))
    assert live(3) == [True]
    alerts = ws.registry.events("spam", kind=DRIFT_EVENT)
    assert len(alerts) == 2 and all("live accuracy" in alert.message for alert in alerts)
    log.close()


def test_a_versions_reference_is_built_once_per_process(
    trained: Trained, tmp_path: Path, sms: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version's reference never changes: the second check reuses it (it predicts every training input)."""
    ws = copy_workspace(trained, tmp_path / "ws")
    _log_served(ws, sms["text"].tolist()[SPAM_ROWS : SPAM_ROWS + 200])
    built: list[int] = []
    build = watch._reference
    monkeypatch.setattr(watch, "_reference", lambda *a, **k: built.append(1) or build(*a, **k))
    first = watch.latest_window(ws, "spam", window=200, min_samples=150, level=0.01)
    again = watch.latest_window(ws, "spam", window=200, min_samples=150, level=0.01)
    assert len(built) == 1 and first.verdict.summary() == again.verdict.summary()
    watch.latest_window(ws, "spam", window=200, min_samples=150, level=0.01, reference_size=300)
    assert len(built) == 2  # another reference size is another reference


def test_a_versions_reference_comes_from_the_drops_it_was_trained_on(
    trained: Trained, tmp_path: Path, sms: pd.DataFrame
) -> None:
    ws = copy_workspace(trained, tmp_path / "ws")
    version = ws.registry.version("spam", trained.production)
    before = assembled(ws, "spam", version.dataset_version)
    assert before is not None and before.dataset_version == version.dataset_version
    more = tmp_path / "more.csv"
    sms.iloc[SPAM_ROWS : SPAM_ROWS + 100].to_csv(more, index=False)
    ingest_file(ws, "spam", more)
    now_all, then = assembled(ws, "spam"), assembled(ws, "spam", version.dataset_version)
    assert now_all is not None and then is not None
    assert len(now_all.train) + len(now_all.test) > len(before.train) + len(before.test)  # repeats merged
    assert then.train.equals(before.train) and then.test.equals(before.test)
    assert assembled(ws, "spam", "no-such-hash") is None


CYRILLIC = str.maketrans("aeopcxyAEOPCXBMHTK", "аеорсхуАЕОРСХВМНТК")  # Latin letters -> their Cyrillic look-alikes


def test_a_share_of_texts_in_another_script_alerts_on_that_share_only(shuffled_banking: pd.DataFrame) -> None:
    rows = shuffled_banking
    reference = Reference.of_texts(rows["text"].tolist()[:6000], [], size=300, seed=0)
    window = rows["text"].tolist()[8000:8200]
    mixed = [text.translate(CYRILLIC) if i % 5 == 0 else text for i, text in enumerate(window)]  # 20% Cyrillic
    assert other_script_share("Привет, world") == pytest.approx(6 / 11)
    assert not check(reference, window, [], level=0.01, min_samples=100).drifted
    verdict = check(reference, mixed, [], level=0.01, min_samples=100)
    assert "non-Latin letter share (KS)" in {f.test for f in verdict.findings if f.fired}, verdict.summary()
