"""A pipeline through its lifecycle: its labelled test set registered as a versioned drop (refused whole, naming the
row and reason), `shoal eval --pipeline` on it, the pipeline's end-to-end score recorded each time one of its models
changes production version (`shoal history --pipeline`), and the optional gate rule that refuses a component whose
challenger hurts the pipeline. Real models (an SMS spam filter, then a Banking77 intent classifier on four intents)
trained on real data, on real SQLite (the registry part on PostgreSQL too)."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import FAST_WORKSPACE, read_csv, spam_model
from shoal.cli import app
from shoal.data.errors import DropRejected
from shoal.data.ingest import ingest_file
from shoal.fleet import FleetError, parse_fleet
from shoal.pipelines import evaluate
from shoal.pipelines.evaluate import evaluate_pipeline
from shoal.pipelines.testset import ingest_pipeline_test
from shoal.registry import PRODUCTION
from shoal.train.trainer import train_models
from shoal.workspace import REGISTRY_ENV, Workspace
from store_snapshot import assert_unchanged, snapshot

INTENTS = ["card_arrival", "exchange_rate", "lost_or_stolen_card", "top_up_failed"]
SWAPPED = {"card_arrival": "exchange_rate", "exchange_rate": "card_arrival"}
INBOX: dict[str, Any] = {"steps": [{"model": "spam", "stop": {"label": ["spam"]}}, {"model": "intent"}]}


def _fleet(pipeline: dict[str, Any], **workspace: Any) -> dict[str, Any]:
    intent = {"task": "text-classification", "metric": "accuracy", "families": ["tfidf-logreg"], "cv_folds": 2}
    return {
        "workspace": {**FAST_WORKSPACE, "n_jobs": 1, **workspace},
        "models": {"spam": spam_model(families=["tfidf-logreg"], cv_folds=2), "intent": intent},
        "pipelines": {"inbox": pipeline},
    }


def _write_fleet(root: Path, pipeline: dict[str, Any] = INBOX, **workspace: Any) -> None:
    text = yaml.safe_dump(_fleet(pipeline, **workspace), sort_keys=False)
    (root / "shoal.yaml").write_text(text, encoding="utf-8")


def _banking() -> tuple[pd.DataFrame, pd.DataFrame]:
    train, test = read_csv("banking77/train.csv"), read_csv("banking77/test.csv")
    return train[train["label"].isin(INTENTS)], test[test["label"].isin(INTENTS)]


def _inbox_test(path: Path) -> pd.DataFrame:
    """Held-out SMS texts (judged on spam) and Banking77 test texts the intent model never sees (judged on spam =
    ham and on their intent)."""
    sms = read_csv("sms_spam/sms_spam.csv").iloc[4000:4150]
    _, test = _banking()
    banking = test.groupby("label").tail(20)  # the intent model's own test drop takes the first 20 of each intent
    cases = pd.concat(
        [
            pd.DataFrame({"text": sms["text"], "spam": sms["label"], "intent": ""}),
            pd.DataFrame({"text": banking["text"], "spam": "ham", "intent": banking["label"]}),
        ]
    )
    cases.to_csv(path, index=False)
    return cases


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """spam v1 and a weak intent v1 (3 texts per intent), in production; no pipeline test set yet."""
    root = tmp_path_factory.mktemp("lifecycle") / "ws"
    root.mkdir()
    _write_fleet(root)
    train, test = _banking()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(REGISTRY_ENV, raising=False)
        ws = Workspace(root)
        ingest_frame(ws, "spam", read_csv("sms_spam/sms_spam.csv").iloc[:1000], source="sms.csv")
        ingest_frame(ws, "intent", train.groupby("label").head(3), source="first.csv", split="train")
        ingest_frame(ws, "intent", test.groupby("label").head(20), source="test.csv", split="test")
        reports = train_models(ws, ["spam", "intent"])
        assert all(report.error is None and report.production == 1 for report in reports), reports
        ws.close()
    _inbox_test(root / "inbox-test.csv")
    return root


def ingest_frame(ws: Workspace, model: str, frame: pd.DataFrame, *, source: str, split: str = "auto") -> None:
    frame.to_csv(ws.root / source, index=False)
    ingest_file(ws, model, ws.root / source, split=split)  # type: ignore[arg-type]


def _copy(trained_root: Path, folder: Path, pipeline: dict[str, Any] = INBOX) -> Workspace:
    root = folder / "ws"
    shutil.copytree(trained_root, root)
    _write_fleet(root, pipeline)
    return Workspace(root)


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})  # a table's rows on one line each


@pytest.fixture
def ws(trained_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    return _copy(trained_root, tmp_path)


def test_a_pipeline_test_set_is_stored_whole_or_not_at_all(
    registry_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    root = tmp_path / "ws"
    root.mkdir()
    _write_fleet(root, registry=registry_url)
    good = _inbox_test(root / "good.csv")
    ws = Workspace(root)

    drop, created = ingest_pipeline_test(ws, "inbox", root / "good.csv")
    assert created and drop.n_rows == len(good) and drop.source == "good.csv"
    stored = ws.registry.load_pipeline_drop(drop)
    assert list(stored.columns) == ["text", "spam", "intent"] and len(stored) == len(good)
    assert ws.registry.artifacts.path(drop.uri).is_file()
    assert ingest_pipeline_test(ws, "inbox", root / "good.csv") == (drop, False)  # the same rows: nothing new
    # a test set is no model's data: no model has a new drop, so no training ever sees these rows
    assert [len(ws.registry.drops(model)) for model in ("spam", "intent")] == [0, 0]

    # a file with one bad row is refused whole, naming the file, the row and the reason; nothing is stored
    bad = good.copy()
    bad.iloc[5, bad.columns.get_loc("text")] = ""
    bad.to_csv(root / "bad.csv", index=False)
    files = sorted(ws.registry.artifacts.root.rglob("*.parquet"))
    with pytest.raises(DropRejected) as caught:
        ingest_pipeline_test(ws, "inbox", root / "bad.csv")
    assert "rejected bad.csv" in str(caught.value) and "line 7: text: expected a text" in str(caught.value)
    (root / "cols.csv").write_text("text,colour\nhi,red\n", encoding="utf-8")
    with pytest.raises(DropRejected, match="column 'colour' is no step of the pipeline"):
        ingest_pipeline_test(ws, "inbox", root / "cols.csv")
    assert ws.registry.pipeline_drops("inbox") == [drop]
    assert sorted(ws.registry.artifacts.root.rglob("*.parquet")) == files

    # a newer file becomes the one the pipeline is judged on; registering the older rows again brings them back
    good.iloc[:100].to_csv(root / "smaller.csv", index=False)
    smaller, created = ingest_pipeline_test(ws, "inbox", root / "smaller.csv")
    assert created and ws.registry.pipeline_drop("inbox") == smaller
    again, created = ingest_pipeline_test(ws, "inbox", root / "good.csv")
    assert created and again.hash == drop.hash and ws.registry.pipeline_drop("inbox") == again
    assert [d.hash for d in ws.registry.pipeline_drops("inbox")] == [drop.hash, smaller.hash, drop.hash]

    ws.close()


def test_the_ingest_command_registers_a_pipeline_test_set_and_refuses_a_bad_one(ws: Workspace) -> None:
    root = str(ws.root)
    before = snapshot(ws.root)
    (ws.root / "bad.csv").write_text("text,spam\nhello,ham\n,spam\n", encoding="utf-8")
    refused = _cli("ingest", "--pipeline", "inbox", str(ws.root / "bad.csv"), "-w", root)
    assert refused.exit_code != 0 and isinstance(refused.exception, DropRejected)
    assert "line 3: text: expected a text" in str(refused.exception)
    assert_unchanged(before, snapshot(ws.root))
    stored = _cli("ingest", "--pipeline", "inbox", str(ws.root / "inbox-test.csv"), "-w", root)
    assert stored.exit_code == 0, stored.output
    assert "stored: test drop" in stored.output and "of pipeline inbox" in stored.output
    assert ws.registry.pipeline_drop("inbox") is not None
    both = _cli("ingest", "spam", str(ws.root / "inbox-test.csv"), "--pipeline", "inbox", "-w", root)
    assert both.exit_code != 0 and "no model name" in both.output


def test_eval_judges_the_pipeline_on_its_newest_registered_test_drop(ws: Workspace) -> None:
    with pytest.raises(FleetError, match=r"has no test set: register one with 'shoal ingest --pipeline inbox FILE'"):
        evaluate_pipeline(ws, "inbox")
    cases = pd.read_csv(ws.root / "inbox-test.csv", keep_default_na=False)
    cases.iloc[:60].to_csv(ws.root / "older.csv", index=False)
    ingest_pipeline_test(ws, "inbox", ws.root / "older.csv")
    drop, _ = ingest_pipeline_test(ws, "inbox", ws.root / "inbox-test.csv")
    shown = _cli("eval", "--pipeline", "inbox", "-w", str(ws.root), "--json")
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.output)
    assert report["n"] == len(cases) and report["test_set"]["hash"] == drop.hash
    assert report["test_set"]["source"] == f"test drop {drop.hash[:12]} (inbox-test.csv)"
    # the same figures as the same rows given as a file
    given = evaluate_pipeline(ws, "inbox", ws.root / "inbox-test.csv")
    assert given["end_to_end"] == report["end_to_end"] and given["steps"] == report["steps"]
    assert given["test_set"]["hash"] == drop.hash
    older = evaluate_pipeline(ws, "inbox", ws.root / "older.csv")
    assert older["n"] == 60


def test_promoting_a_component_records_the_pipelines_end_to_end_score(ws: Workspace) -> None:
    root = str(ws.root)
    history = _cli("history", "--pipeline", "inbox", "-w", root)
    assert history.exit_code == 0 and "has no test set: register one with 'shoal ingest --pipeline inbox" in (
        history.output
    )
    drop, _ = ingest_pipeline_test(ws, "inbox", ws.root / "inbox-test.csv")
    before = evaluate_pipeline(ws, "inbox")
    train, _ = _banking()
    ingest_frame(ws, "intent", train.groupby("label").tail(60), source="second.csv", split="train")
    [report] = train_models(ws, ["intent"])
    assert report.decision is not None and report.decision.promote and report.production == 2, report

    [score] = ws.registry.pipeline_scores("inbox")
    assert (score.model, score.from_version, score.to_version, score.actor) == ("intent", 1, 2, "gate")
    record, decision = score.record, report.decision
    assert record["gain"] == {
        "metric": "accuracy",
        "delta": decision.delta,
        "ci": decision.ci,
        "p_value": decision.p_value,
        "test": "mcnemar",
    }
    after = evaluate_pipeline(ws, "inbox")
    assert record["versions"] == {"spam": 1, "intent": 2} == after["versions"]
    assert record["end_to_end"] == after["end_to_end"] and record["steps"] == after["steps"]
    assert record["test_set"] == {"source": f"test drop {drop.hash[:12]} (inbox-test.csv)", "hash": drop.hash, "n": 230}
    assert after["end_to_end"]["accuracy"] > before["end_to_end"]["accuracy"]  # a better component, a better system

    # a rollback is a production change too: recorded, with no gain (no gate judged it)
    rolled = _cli("rollback", "intent", "-w", root)
    assert rolled.exit_code == 0, rolled.output
    latest = ws.registry.pipeline_scores("inbox")[-1]
    assert (latest.model, latest.from_version, latest.to_version, latest.actor) == ("intent", 2, 1, "rollback")
    assert latest.record["gain"] is None and latest.record["end_to_end"] == before["end_to_end"]

    shown = _cli("history", "--pipeline", "inbox", "-w", root, "--json")
    assert shown.exit_code == 0, shown.output
    rows = json.loads(shown.output)
    assert [(r["model"], r["from_version"], r["to_version"], r["actor"]) for r in rows] == [
        ("intent", 1, 2, "gate"),
        ("intent", 2, 1, "rollback"),
    ]
    table = _cli("history", "--pipeline", "inbox", "-w", root)
    assert table.exit_code == 0, table.output
    assert "intent v1 → v2 (gate)" in table.output and "intent v2 → v1 (rollback)" in table.output
    assert f"accuracy Δ {decision.delta:+.4f}" in table.output and "not gated" in table.output
    assert f"{after['end_to_end']['accuracy']:.4f}" in table.output and "spam v1, intent v2" in table.output
    assert table.output.index("v1 → v2") < table.output.index("v2 → v1")  # newest last


def test_a_pipeline_that_cannot_be_judged_never_holds_up_a_promotion(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    drop, _ = ingest_pipeline_test(ws, "inbox", ws.root / "inbox-test.csv")
    ws.registry.artifacts.path(drop.uri).unlink()  # the test drop's file is lost
    train, _ = _banking()
    ingest_frame(ws, "intent", train.groupby("label").tail(60), source="second.csv", split="train")
    with caplog.at_level(logging.WARNING, logger="shoal.pipelines"):
        [report] = train_models(ws, ["intent"])
    assert report.error is None and report.production == 2
    [score] = ws.registry.pipeline_scores("inbox")
    assert score.to_version == 2 and "error" in score.record and "end_to_end" not in score.record
    assert "pipeline inbox: not judged after intent v2" in caplog.text
    assert all(text not in caplog.text for text in pd.read_csv(ws.root / "inbox-test.csv")["text"].head(20))
    promoted = _cli("promote", "intent", "1", "-w", str(ws.root))
    assert promoted.exit_code == 0, promoted.output
    assert ws.registry.alias("intent", PRODUCTION) == 1 and len(ws.registry.pipeline_scores("inbox")) == 2
    table = _cli("history", "--pipeline", "inbox", "-w", str(ws.root))
    assert "not judged: FileNotFoundError" in table.output


GATED = {**INBOX, "gate": {"no_significant_drop": True}}


def test_the_pipeline_gate_refuses_a_component_that_hurts_the_pipeline(
    trained_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new drop relabels two intents for one another (a labelling mistake in train and test alike): on its own
    test set the challenger is far better, but the pipeline's test set knows the true intents."""
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    ws = _copy(trained_root, tmp_path, GATED)
    ingest_pipeline_test(ws, "inbox", ws.root / "inbox-test.csv")
    train, test = _banking()
    swap = lambda frame: frame.assign(label=frame["label"].replace(SWAPPED))  # noqa: E731
    ingest_frame(ws, "intent", swap(train), source="relabelled.csv", split="train")
    ingest_frame(ws, "intent", swap(test.groupby("label").head(20)), source="relabelled-test.csv", split="test")
    [report] = train_models(ws, ["intent"])
    decision = report.decision
    assert decision is not None and not decision.promote and report.production == 1, decision
    assert decision.delta > 0 and decision.p_value < 0.05  # alone, the challenger would have won
    assert decision.reason.startswith("kept the champion: pipeline 'inbox' end to end on 230 inputs of test drop")
    assert "(accuracy " in decision.reason and "with v1" in decision.reason and "p=" in decision.reason
    assert "alone: promoted: significantly better" in decision.reason
    assert ws.registry.pipeline_scores("inbox") == []  # no production change, nothing to record


def test_the_pipeline_gate_lets_a_component_through_that_does_not_hurt_it(
    trained_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    ws = _copy(trained_root, tmp_path, {**INBOX, "gate": {"alpha": 0.01}})
    ingest_pipeline_test(ws, "inbox", ws.root / "inbox-test.csv")
    train, _ = _banking()
    ingest_frame(ws, "intent", train.groupby("label").tail(60), source="second.csv", split="train")
    runs: list[dict[str, Any]] = []
    judge = evaluate.judge
    monkeypatch.setattr(
        evaluate, "judge", lambda pipeline, cases, models: runs.append(models) or judge(pipeline, cases, models)
    )
    [report] = train_models(ws, ["intent"])
    # the history reuses the rule's run with the challenger: the pipeline ran twice (production, challenger), not 3x
    assert [{model: number for model, (number, _, _) in models.items()} for models in runs] == [
        {"spam": 1, "intent": 1},
        {"spam": 1, "intent": 2},
    ]
    decision = report.decision
    assert decision is not None and decision.promote and report.production == 2, decision
    assert decision.reason.startswith("promoted: significantly better")
    assert "; pipeline 'inbox' end to end on 230 inputs" in decision.reason
    assert len(ws.registry.pipeline_scores("inbox")) == 1


@pytest.mark.parametrize(
    ("gate", "expected"),
    [
        ({"alpha": 2}, "pipelines.inbox.gate.alpha: Input should be less than 1"),
        ({"no_significant_drops": True}, "pipelines.inbox.gate.no_significant_drops: unknown key"),
        ({"no_significant_drop": "often"}, "pipelines.inbox.gate.no_significant_drop: Input should be a valid bool"),
        ("yes", "pipelines.inbox.gate: Input should be a valid dictionary"),
    ],
)
def test_a_bad_pipeline_gate_is_rejected_naming_its_key_path(gate: Any, expected: str) -> None:
    with pytest.raises(FleetError) as caught:
        parse_fleet(_fleet({**INBOX, "gate": gate}), Path("shoal.yaml"))
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("content", "missing"),
    [
        ("text,spam,intent\n", "no rows: nothing to judge"),
        ("text\nhello\nwin a prize\n", "no label column: nothing to judge"),
        ("text,spam,intent\nhello,,\nwin a prize,,\n", "every label cell (spam, intent) is empty: nothing to judge"),
    ],
)
def test_a_pipeline_test_set_that_judges_nothing_is_refused_whole(ws: Workspace, content: str, missing: str) -> None:
    """Such a set would become the newest drop, and the gate would compare empty arrays: every challenger passing."""
    (ws.root / "empty.csv").write_text(content, encoding="utf-8")
    before = snapshot(ws.root)
    with pytest.raises(DropRejected) as caught:
        ingest_pipeline_test(ws, "inbox", ws.root / "empty.csv")
    assert "rejected empty.csv" in str(caught.value) and missing in str(caught.value)
    assert "steps: spam, intent" in str(caught.value) or "expected labels" in str(caught.value)
    assert ws.registry.pipeline_drops("inbox") == []
    assert_unchanged(before, snapshot(ws.root))


def test_concurrent_ingests_of_the_same_pipeline_test_set_store_it_once(
    registry_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ingests of the same rows at once: the second waits for the first's check, file and row, then finds the
    rows already newest. Each ingest holds at its file written, its row not yet, until the other arrives there too
    (or a bounded wait passes: with the check inside the write lock the other never can)."""
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    root = tmp_path / "ws"
    root.mkdir()
    _write_fleet(root, registry=registry_url)
    _inbox_test(root / "good.csv")
    ws = Workspace(root)
    both = threading.Event()
    arrivals = iter(range(2))

    def hold(name: str) -> None:
        if name != "drop_written":
            return
        if next(arrivals, None) == 1:
            both.set()
        both.wait(timeout=5)

    monkeypatch.setattr("shoal.registry.database.checkpoint", hold)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: ingest_pipeline_test(ws, "inbox", root / "good.csv"), range(2)))
    assert sorted(created for _, created in results) == [False, True]
    [stored] = ws.registry.pipeline_drops("inbox")
    assert {drop.hash for drop, _ in results} == {stored.hash}
    assert ws.registry.artifacts.path(stored.uri).is_file()
    ws.close()


def _better_intent(ws: Workspace) -> None:
    train, _ = _banking()
    ingest_frame(ws, "intent", train.groupby("label").tail(60), source="second.csv", split="train")


def _gated(trained_root: Path, tmp_path: Path, pipeline: dict[str, Any] = GATED) -> Workspace:
    ws = _copy(trained_root, tmp_path, pipeline)
    _better_intent(ws)
    return ws


def test_a_challenger_that_fails_inside_the_pipeline_is_refused(
    trained_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production setup runs; only with the challenger in place does the pipeline fail (its artifact cannot be
    loaded for the pipeline's inputs): never 'not judged' and promoted."""
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    ws = _gated(trained_root, tmp_path)
    ingest_pipeline_test(ws, "inbox", ws.root / "inbox-test.csv")
    load_predictor = Workspace.load_predictor

    def failing(self: Workspace, version: Any) -> Any:
        if (version.model, version.number) == ("intent", 2):
            raise RuntimeError("the artifact's vocabulary is unreadable")
        return load_predictor(self, version)

    monkeypatch.setattr(Workspace, "load_predictor", failing)
    [report] = train_models(ws, ["intent"])
    decision = report.decision
    assert decision is not None and not decision.promote and report.production == 1, decision
    assert decision.reason.startswith(
        "kept the champion: v2 fails in pipeline 'inbox' (RuntimeError: the artifact's vocabulary is unreadable); "
        "alone: promoted: significantly better"
    )
    assert ws.registry.pipeline_scores("inbox") == []


@pytest.mark.parametrize("source", ["none", "empty test file"])
def test_a_gated_pipeline_that_cannot_be_judged_is_said_so_and_never_passes_with_nan(
    trained_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    pipeline = GATED if source == "none" else {**GATED, "test": "unlabelled.csv"}
    ws = _gated(trained_root, tmp_path, pipeline)
    (ws.root / "unlabelled.csv").write_text("text,spam,intent\nhello,,\nmy card has not arrived,,\n", encoding="utf-8")
    [report] = train_models(ws, ["intent"])
    decision = report.decision
    assert decision is not None and decision.promote and report.production == 2, decision
    # an unlabelled file is refused where it is read; were it not, the rule itself finds no judged input
    why = "has no test set: register one" if source == "none" else "nothing to judge"
    assert "; pipeline 'inbox' not judged: " in decision.reason and why in decision.reason
    assert "nan" not in decision.reason


def test_the_pipeline_gate_judges_on_the_fleet_files_test_set(
    trained_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    ws = _gated(trained_root, tmp_path, {**GATED, "test": "inbox-test.csv"})
    [report] = train_models(ws, ["intent"])
    decision = report.decision
    assert decision is not None and decision.promote and report.production == 2, decision
    assert "; pipeline 'inbox' end to end on 230 inputs of " in decision.reason
    assert f"{ws.root / 'inbox-test.csv'} (accuracy " in decision.reason
    [score] = ws.registry.pipeline_scores("inbox")
    assert score.record["test_set"]["source"] == str(ws.root / "inbox-test.csv")
    assert score.record["versions"] == {"spam": 1, "intent": 2} and score.from_version == 1


def test_a_promotion_and_its_pipeline_scores_stand_or_fall_together(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process stopped while it judges the pipeline (here: interrupted) has changed nothing; the scores are written
    in the alias change's own transaction, so a change never stands without them."""
    ingest_pipeline_test(ws, "inbox", ws.root / "inbox-test.csv")
    _better_intent(ws)

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr("shoal.pipelines.evaluate.report", interrupted)
        train_models(ws, ["intent"])
    assert ws.registry.alias("intent", PRODUCTION) == 1 and ws.registry.pipeline_scores("inbox") == []
    promoted = _cli("promote", "intent", "2", "-w", str(ws.root))
    assert promoted.exit_code == 0, promoted.output
    [score] = ws.registry.pipeline_scores("inbox")
    assert (score.from_version, score.to_version, score.actor) == (1, 2, "manual")


def test_nothing_is_recorded_until_every_model_of_the_pipeline_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    root = tmp_path / "ws"
    root.mkdir()
    _write_fleet(root)
    _inbox_test(root / "inbox-test.csv")
    ws = Workspace(root)
    ingest_pipeline_test(ws, "inbox", root / "inbox-test.csv")
    ingest_frame(ws, "spam", read_csv("sms_spam/sms_spam.csv").iloc[:1000], source="sms.csv")
    [report] = train_models(ws, ["spam"])
    assert report.error is None and report.production == 1, report
    assert ws.registry.pipeline_scores("inbox") == []  # intent has no production version: no "not judged" noise
    ws.close()


def test_a_promotion_by_the_worker_records_the_pipelines_score(ws: Workspace) -> None:
    """The worker trains in a child process under its wall-clock budget: the score is written there, with the alias."""
    from shoal.registry.jobs import JobQueue
    from shoal.worker.runner import Worker

    ingest_pipeline_test(ws, "inbox", ws.root / "inbox-test.csv")
    train, _ = _banking()
    inbox = ws.inbox("intent")
    inbox.mkdir(parents=True)
    train.groupby("label").tail(60).to_csv(inbox / "second.csv", index=False)
    assert Worker(ws, worker_id="w1", settle_seconds=0.05).run(once=True) == 1
    [job] = JobQueue(ws.registry).jobs("intent")
    assert job.error is None, job.error
    production = ws.registry.alias("intent", PRODUCTION)
    assert production is not None and production > 1
    [score] = ws.registry.pipeline_scores("inbox")
    assert (score.model, score.from_version, score.to_version, score.actor) == ("intent", 1, production, "gate")
    assert score.record["versions"] == {"spam": 1, "intent": production} and "end_to_end" in score.record
