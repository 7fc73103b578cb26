"""`shoal distill`: a teacher labels unlabeled SMS texts into a training drop, never touching the test set."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from conftest import spam_model
from shoal.cli import app
from shoal.data.ingest import ingest_frame
from shoal.data.readers import LINE
from shoal.train.teach import label as distill
from shoal.workspace import Workspace


def _workspace(make_workspace: Callable[..., Workspace], sms: pd.DataFrame) -> Workspace:
    ws = make_workspace({"spam": spam_model()})
    labelled = sms.iloc[:1000].assign(**{LINE: range(2, 1002)})
    ingest_frame(ws, "spam", labelled, source="labelled.csv", split="auto")
    return ws


def test_teacher_labels_new_texts_only(make_workspace: Callable[..., Workspace], sms: pd.DataFrame, tmp_path: Path):
    ws = _workspace(make_workspace, sms)
    unlabeled = pd.concat([sms.iloc[1000:1500][["text"]], sms.iloc[:50][["text"]]])  # 50 texts already known
    path = tmp_path / "unlabeled.csv"
    unlabeled.to_csv(path, index=False)
    result = distill(ws, "spam", "tfidf-logreg", path)
    assert result.known >= 50
    assert result.ingest is not None and result.ingest.drop.n_test == 0
    stored = ws.registry.load_drops([result.ingest.drop])
    assert len(stored) == result.read - result.known - result.repeated - result.unsure
    truth = dict(zip(sms["text"], sms["label"], strict=True))
    agree = sum(truth[text] == label for text, label in zip(stored["text"], stored["label"], strict=True)) / len(stored)
    floor = max(pd.Series([truth[text] for text in stored["text"]]).value_counts(normalize=True))  # all "ham"
    assert 1 - agree <= (1 - floor) / 2, f"the teacher agrees with the truth on {agree:.3f}; always-ham: {floor:.3f}"


def test_cli_with_a_confidence_floor(make_workspace: Callable[..., Workspace], sms: pd.DataFrame, tmp_path: Path):
    ws = _workspace(make_workspace, sms)
    path = tmp_path / "unlabeled.csv"
    sms.iloc[1000:1200][["text"]].to_csv(path, index=False)
    args = ["distill", "spam", "--teacher", "majority", "--unlabeled", str(path), "--min-confidence", "0.99"]
    done = CliRunner().invoke(app, [*args, "-w", str(ws.root)])
    assert done.exit_code == 0, done.output
    assert "below --min-confidence" in " ".join(done.output.split()) and "nothing to store" in done.output
