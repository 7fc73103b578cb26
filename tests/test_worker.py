"""The worker on real SMS spam data and a real SQLite workspace: inbox files are ingested or rejected, new data
is debounced into one job, jobs train and gate, `shoal retrain` queues a job, and the decisions are in the
event log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import spam_model, write_rows
from shoal.cli import app
from shoal.data.ingest import ingest_file
from shoal.fleet import RetrainSpec
from shoal.registry.jobs import DONE, QUEUED, JobQueue
from shoal.worker.inbox import Inbox
from shoal.worker.runner import Worker
from shoal.worker.triggers import Pending, Triggers, data_reason, schedule_slot

runner = CliRunner()


@pytest.fixture
def spam(sms: pd.DataFrame) -> pd.DataFrame:
    return sms.head(300)


def test_a_good_inbox_file_is_ingested_trained_and_promoted(make_workspace, spam) -> None:
    ws = make_workspace({"spam": spam_model(labels=["ham", "spam"])}, n_jobs=1)
    inbox = ws.inbox("spam")
    inbox.mkdir(parents=True)
    write_rows(inbox / "first.csv", spam)

    ran = Worker(ws, worker_id="w1", settle_seconds=0.2).run(once=True)

    assert ran == 1
    assert (inbox / "processed" / "first.csv").exists() and not (inbox / "first.csv").exists()
    [drop] = ws.registry.drops("spam")
    assert drop.source == "first.csv" and drop.n_rows == len(spam)
    [job] = JobQueue(ws.registry).jobs("spam")
    assert job.status == DONE and job.dataset_version == ws.registry.dataset_version("spam")
    assert "1 drop(s)" in job.reason
    assert ws.registry.alias("spam") is not None
    kinds = [e.kind for e in ws.registry.events("spam")]
    assert kinds[0] == "ingested" and kinds[1:3] == ["job_queued", "job_started"]
    assert kinds[-1] == "job_finished" and "promoted" in kinds
    finished = ws.registry.events("spam")[-1]
    assert "production v" in finished.message and finished.payload["promoted"] is True

    # nothing new: another pass queues nothing
    assert Worker(ws, worker_id="w2", settle_seconds=0.2).run(once=True) == 0
    assert len(JobQueue(ws.registry).jobs("spam")) == 1


def test_a_bad_inbox_file_is_rejected_with_its_line_and_changes_nothing(make_workspace, spam, tmp_path: Path) -> None:
    ws = make_workspace({"spam": spam_model(retrain={"on_new_data": False})}, n_jobs=1)
    ingest_file(ws, "spam", write_rows(tmp_path / "first.csv", spam.head(50)))
    before = ws.registry.drops("spam")
    inbox = ws.inbox("spam")
    inbox.mkdir(parents=True)
    bad = spam.iloc[50:60].copy()
    bad.iloc[1, bad.columns.get_loc("text")] = ""  # data row 2 = line 3 of the file
    write_rows(inbox / "bad.csv", bad)

    Worker(ws, worker_id="w1", settle_seconds=0.1).run(once=True)

    assert not (inbox / "bad.csv").exists()
    assert (inbox / "rejected" / "bad.csv").exists()
    error = (inbox / "rejected" / "bad.csv.error.txt").read_text()
    assert "bad.csv: line 3: empty text" in error and "nothing was written" in error
    assert ws.registry.drops("spam") == before
    assert not (inbox / "processed").exists() or not list((inbox / "processed").iterdir())
    assert [e.kind for e in ws.registry.events("spam")] == ["ingested"]  # the refusal added no event
    assert JobQueue(ws.registry).jobs("spam") == []


def test_a_file_still_being_written_waits_until_its_size_is_stable(make_workspace, spam) -> None:
    ws = make_workspace({"spam": spam_model()}, n_jobs=1)
    inbox = ws.inbox("spam")
    inbox.mkdir(parents=True)
    watcher = Inbox(ws, settle_seconds=0.0)
    path = write_rows(inbox / "growing.csv", spam.head(10))
    (inbox / ".hidden.csv").write_text("text,label\n")
    (inbox / "notes.txt").write_text("not data")
    assert watcher.ready("spam") == []  # first sight: size noted
    with path.open("a") as handle:
        handle.write("one more row,ham\n")
    assert watcher.ready("spam") == []  # it grew
    assert watcher.ready("spam") == [path]  # unchanged since the last look


def test_debounce_and_schedules() -> None:
    at = datetime(2026, 11, 22, 9, 17, 30, tzinfo=UTC)
    spec = RetrainSpec(min_new_rows=100, debounce_seconds=30)
    few = Pending("d1", new_rows=5, new_drops=1, latest=at - timedelta(seconds=10))
    assert data_reason(spec, few, at) is None
    assert "debounce_seconds 30" in (data_reason(spec, few, at + timedelta(seconds=20)) or "")
    many = Pending("d1", new_rows=150, new_drops=2, latest=at)
    assert "min_new_rows 100" in (data_reason(spec, many, at) or "")
    assert schedule_slot("6h", at) == datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
    assert schedule_slot("15m", at) == datetime(2026, 11, 22, 9, 15, tzinfo=UTC)
    assert schedule_slot("0 3 * * *", at) == datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    assert schedule_slot("0 3 * * *", datetime(2026, 11, 22, 3, 0, tzinfo=UTC)).hour == 3


def test_triggers_wait_for_the_debounce_and_a_schedule_fires_once_per_slot(make_workspace, spam, tmp_path) -> None:
    ws = make_workspace({"spam": spam_model(retrain={"min_new_rows": 1000, "debounce_seconds": 60})})
    ingest_file(ws, "spam", write_rows(tmp_path / "a.csv", spam.head(40)))
    queue = JobQueue(ws.registry)
    triggers = Triggers(ws, queue)
    drop_time = ws.registry.drops("spam")[0].created_at
    assert triggers.check("spam", at=drop_time + timedelta(seconds=5)) is None
    job = triggers.check("spam", at=drop_time + timedelta(seconds=61))
    assert job is not None and "debounce_seconds 60" in job.reason
    assert triggers.check("spam", at=drop_time + timedelta(seconds=120)) is None  # already queued

    scheduled = make_workspace({"spam": spam_model(retrain={"on_new_data": False, "schedule": "1h"})}, n_jobs=1)
    ingest_file(scheduled, "spam", write_rows(tmp_path / "b.csv", spam.head(40)))
    triggers = Triggers(scheduled, JobQueue(scheduled.registry))
    start = datetime(2026, 11, 22, 9, 10, tzinfo=UTC)
    assert triggers.check("spam", at=start) is None  # a worker starting mid-slot waits for the next time
    assert triggers.check("spam", at=start + timedelta(minutes=30)) is None
    fired = triggers.check("spam", at=start + timedelta(minutes=55))
    assert fired is not None and fired.reason.startswith("schedule '1h'")
    assert triggers.check("spam", at=start + timedelta(minutes=56)) is None


def test_shoal_retrain_queues_a_job_a_worker_runs_it_and_history_shows_it(make_workspace, spam, tmp_path) -> None:
    ws = make_workspace({"spam": spam_model(retrain={"on_new_data": False})}, n_jobs=1)
    w = str(ws.root)
    missing = runner.invoke(app, ["retrain", "spam", "-w", w])
    assert missing.exit_code != 0 and "ingest" in str(missing.exception)
    ingest_file(ws, "spam", write_rows(tmp_path / "a.csv", spam))

    queued = runner.invoke(app, ["retrain", "spam", "-w", w])
    assert queued.exit_code == 0, queued.output
    assert queued.output.startswith("job 1 queued") and "shoal worker" in queued.output
    assert JobQueue(ws.registry).job(1).status == QUEUED
    assert runner.invoke(app, ["retrain", "spam", "-w", w]).output.startswith("job 1 for dataset")

    assert Worker(ws, worker_id="w1").run(once=True) == 1
    waited = runner.invoke(app, ["retrain", "spam", "--wait", "-w", w])
    assert waited.exit_code == 0 and "job 1 done" in waited.output

    listed = json.loads(runner.invoke(app, ["jobs", "spam", "--json", "-w", w]).output)
    assert [(j["id"], j["status"], j["reason"]) for j in listed] == [(1, "done", "manual: shoal retrain")]
    history = json.loads(runner.invoke(app, ["history", "spam", "--json", "-w", w]).output)
    kinds = [e["kind"] for e in history]
    assert {"job_queued", "job_started", "job_finished", "trained", "promoted"} <= set(kinds)


def test_the_inbox_refuses_a_file_for_good_but_retries_when_the_store_fails(
    make_workspace, spam, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12: a file whose validation raised anything but DropRejected was retried at every scan for ever.
    What the file's reading and validation raise is the file's: it moves to rejected/ once. A failing store (here:
    a plain file where the drops' folder must go) is not the file's fault: the file stays and the next scan, once
    the store is fixed, ingests it."""
    ws = make_workspace({"spam": spam_model(retrain={"on_new_data": False})}, n_jobs=1)
    inbox = ws.inbox("spam")
    inbox.mkdir(parents=True)
    worker = Worker(ws, worker_id="w1", settle_seconds=0.0)

    surrogate = inbox / "surrogate.jsonl"
    surrogate.write_text('{"text": "x\\ud800y", "label": "ham"}\n', encoding="utf-8")
    worker.run(once=True)
    worker.run(once=True)
    assert not surrogate.exists() and (inbox / "rejected" / "surrogate.jsonl").exists()
    assert "line 1: column 'text': a lone surrogate" in (inbox / "rejected" / "surrogate.jsonl.error.txt").read_text()

    from shoal.tasks.text_classification.kind import TextClassification

    def broken(*args: object, **kwargs: object) -> None:  # stands for a bug no test found: it must not loop
        raise KeyError("a bug")

    with monkeypatch.context() as patch:
        patch.setattr(TextClassification, "validate", broken)
        write_rows(inbox / "bug.csv", spam.head(20))
        worker.run(once=True)
        worker.run(once=True)
    assert (inbox / "rejected" / "bug.csv").exists() and not (inbox / "bug.csv").exists()
    assert "could not be validated (KeyError" in (inbox / "rejected" / "bug.csv.error.txt").read_text()

    blocked = ws.artifact_root / "data" / "spam"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("not a folder")
    good = write_rows(inbox / "good.csv", spam.head(50))
    worker.run(once=True)
    worker.run(once=True)
    assert good.exists() and ws.registry.drops("spam") == []  # kept for the next scan
    blocked.unlink()
    worker.run(once=True)
    assert not good.exists() and (inbox / "processed" / "good.csv").exists()
    assert [d.source for d in ws.registry.drops("spam")] == ["good.csv"]
