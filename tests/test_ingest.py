"""Data drops: formats, content addressing, stable hash splits, --skip-invalid and warnings (whole-drop rejection
through every entry point: test_rejected_drops.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import spam_model, write_rows
from shoal.data.errors import DropRejected
from shoal.data.ingest import ingest_file
from shoal.data.split import hash_fraction
from shoal.tasks.text_classification import normalize


def test_same_rows_in_every_format_make_one_drop(make_workspace, sms, tmp_path: Path) -> None:
    ws = make_workspace({"spam": spam_model()})
    rows = sms.head(200)
    csv = write_rows(tmp_path / "a.csv", rows)
    tsv = tmp_path / "a.tsv"
    rows.to_csv(tsv, sep="\t", index=False)
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows.to_dict("records")), encoding="utf-8")
    parquet = tmp_path / "a.parquet"
    rows.to_parquet(parquet)
    first = ingest_file(ws, "spam", csv)
    assert first.created and first.drop.n_rows == 200
    for path in (tsv, jsonl, parquet):
        again = ingest_file(ws, "spam", path)
        assert not again.created and again.drop.hash == first.drop.hash
    assert len(ws.registry.drops("spam")) == 1


def test_auto_split_is_by_text_hash_and_stable_as_data_grows(make_workspace, sms, tmp_path: Path) -> None:
    ws = make_workspace({"spam": spam_model(split={"test_fraction": 0.25})})
    ingest_file(ws, "spam", write_rows(tmp_path / "one.csv", sms.iloc[:1000]))
    ingest_file(ws, "spam", write_rows(tmp_path / "two.csv", sms.iloc[1000:3000]))
    frame = ws.registry.load_drops(ws.registry.drops("spam"))
    expected = ["test" if hash_fraction(normalize(t)) < 0.25 else "train" for t in frame["text"]]
    assert frame["split"].tolist() == expected
    assert 0.2 < (frame["split"] == "test").mean() < 0.3
    # the same texts in a new drop land in the same split: the test set never leaks into training
    ingest_file(ws, "spam", write_rows(tmp_path / "three.csv", sms.iloc[500:1500]))
    frame = ws.registry.load_drops(ws.registry.drops("spam"))
    assert frame.groupby(frame["text"].map(normalize))["split"].nunique().max() == 1


def test_test_tagged_drop_goes_to_test_as_is(make_workspace, sms, tmp_path: Path) -> None:
    ws = make_workspace({"spam": spam_model()})
    result = ingest_file(ws, "spam", write_rows(tmp_path / "t.csv", sms.head(50)), split="test")
    assert (result.drop.n_test, result.drop.n_train) == (50, 0)


def test_skip_invalid_keeps_the_good_rows_and_lists_the_bad(make_workspace, sms, tmp_path: Path) -> None:
    ws = make_workspace({"spam": spam_model()})
    rows = sms.head(30).copy()
    rows.loc[3, "text"] = ""
    result = ingest_file(ws, "spam", write_rows(tmp_path / "x.csv", rows), skip_invalid=True)
    assert result.drop.n_rows == 29
    assert any("line 5: empty text" in s for s in result.skipped)


def test_warnings_for_imbalance_tiny_classes_and_train_test_duplicates(make_workspace, sms, tmp_path: Path) -> None:
    ws = make_workspace({"spam": spam_model()})
    rows = pd.concat([sms[sms.label == "ham"].head(200), sms[sms.label == "spam"].head(3)])
    result = ingest_file(ws, "spam", write_rows(tmp_path / "a.csv", rows), split="train")
    assert any("class imbalance" in w for w in result.warnings)
    assert any("tiny classes" in w for w in result.warnings)
    again = ingest_file(ws, "spam", write_rows(tmp_path / "b.csv", rows.head(10)), split="test")
    assert any("10 text(s) appear in both train and test" in w for w in again.warnings)


def test_unknown_file_type_and_unknown_model_are_clear(make_workspace, tmp_path: Path) -> None:
    ws = make_workspace({"spam": spam_model()})
    odd = tmp_path / "data.xlsx"
    odd.write_bytes(b"x")
    with pytest.raises(DropRejected, match="unknown file type"):
        ingest_file(ws, "spam", odd)
    from shoal.fleet import FleetError

    with pytest.raises(FleetError, match="no model 'nope'"):
        ingest_file(ws, "nope", odd)
