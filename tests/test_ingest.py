"""Data drops: formats, content addressing, stable hash splits, --skip-invalid and warnings (whole-drop rejection
through every entry point: test_rejected_drops.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import spam_model, write_rows
from shoal.data.errors import DropRejected
from shoal.data.ingest import ingest_file, ingest_rows
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


def test_jsonl_lines_end_at_newline_only(make_workspace, tmp_path: Path) -> None:
    """Issue 12: U+2028, U+2029 and U+0085 inside a JSON string split the line (str.splitlines): valid lines were
    refused and line numbers drifted. A CRLF file reads the same."""
    ws = make_workspace({"spam": spam_model()})
    texts = ["one\u2028two", "three\u2029four", "five\x85six", "plain"]
    lines = [json.dumps({"text": t, "label": "ham"}, ensure_ascii=False) for t in texts]
    good = tmp_path / "separators.jsonl"
    good.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    result = ingest_file(ws, "spam", good)
    stored = ws.registry.load_drops([result.drop])
    assert sorted(stored["text"]) == sorted(texts)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([*lines, '{"text": "no end']), encoding="utf-8")
    with pytest.raises(DropRejected, match="line 5: not valid JSON"):
        ingest_file(ws, "spam", bad)


def test_integer_labels_are_their_digits_in_every_format(make_workspace, tmp_path: Path) -> None:
    """A label column of integers means the labels "0" and "1" in CSV, JSONL and Parquet alike — never "1.0",
    even when the Parquet int column has a null (pandas would read it as floats); a float label is refused."""
    ws = make_workspace({"spam": spam_model()})
    texts = [f"message number {i}" for i in range(6)]
    csv = tmp_path / "ints.csv"
    pd.DataFrame({"text": texts, "label": [0, 1] * 3}).to_csv(csv, index=False)
    jsonl = tmp_path / "ints.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t, "label": i % 2}) for i, t in enumerate(texts)), encoding="utf-8")
    first = ingest_file(ws, "spam", csv)
    assert ingest_file(ws, "spam", jsonl).drop.hash == first.drop.hash
    assert sorted(set(ws.registry.load_drops([first.drop])["label"])) == ["0", "1"]

    import pyarrow as pa
    import pyarrow.parquet as pq

    with_null = tmp_path / "with_null.parquet"
    pq.write_table(pa.table({"text": [*texts, "no label"], "label": pa.array([0, 1] * 3 + [None])}), with_null)
    result = ingest_file(ws, "spam", with_null, skip_invalid=True)
    assert result.drop.hash == first.drop.hash and result.skipped == ["line 7: empty label in column 'label'"]
    floats = tmp_path / "floats.parquet"
    pd.DataFrame({"text": texts, "label": [0.0, 1.0] * 3}).to_parquet(floats)
    with pytest.raises(DropRejected, match=r"line 1: column 'label': a number \(0.0\) where a label"):
        ingest_file(ws, "spam", floats)


FOREST = {"task": "regression", "target_column": "y", "families": ["mean"], "metric": "mae"}
CARS = {"task": "forecasting", "time_column": "t", "value_column": "v", "id_column": "id", "freq": "h", "horizon": 2}
PAIRS = {"task": "embedding", "families": ["static-embed"]}


@pytest.mark.parametrize(
    ("spec", "good", "bad", "reason"),
    [
        (FOREST, {"x": 1.5, "c": "a", "y": 2.0}, {"y": True}, "column 'y': a boolean (True) where a finite number"),
        (FOREST, {"x": 1.5, "c": "a", "y": 2.0}, {"y": float("inf")}, "column 'y': inf is not a finite number"),
        (FOREST, {"x": 1.5, "c": "a", "y": 2.0}, {"y": "1_000"}, "column 'y': '1_000' is not a number"),
        (FOREST, {"x": 1.5, "c": "a", "y": 2.0}, {"x": [1, 2]}, "column 'x': a list where a finite number"),
        (FOREST, {"x": 1.5, "c": "a", "y": 2.0}, {"c": 7}, "column 'c': a number (7) where a category"),
        (FOREST, {"x": 1.5, "c": "a", "y": 2.0}, {"c": "x\ud800"}, "column 'c': a lone surrogate"),
        (CARS, {"id": "a", "t": "2024-01-01T00:00", "v": 1.0}, {"t": 1704067200}, "column 't': a number (1704067200)"),
        (CARS, {"id": "a", "t": "2024-01-01T00:00", "v": 1.0}, {"t": True}, "column 't': a boolean (True) where an"),
        (CARS, {"id": "a", "t": "2024-01-01T00:00", "v": 1.0}, {"v": "NaN"}, "missing value in column(s) 'v'"),
        (CARS, {"id": "a", "t": "2024-01-01T00:00", "v": 1.0}, {"id": 1.5}, "column 'id': a number (1.5) where a"),
        (CARS, {"id": "a", "t": "2024-01-01T00:00", "v": 1.0}, {"id": None}, "missing value in column(s) 'id'"),
        (PAIRS, {"text": "a cat", "text_pair": "a dog", "score": 0.5}, {"score": False}, "column 'score': a boolean"),
        (
            PAIRS,
            {"text": "a cat", "text_pair": "a dog", "score": 0.5},
            {"text_pair": {"a": 1}},
            "column 'text_pair': an object",
        ),
        (
            PAIRS,
            {"text": "a cat", "text_pair": "a dog", "score": 0.5},
            {"text": b"a cat"},
            "column 'text': binary data (bytes)",
        ),
    ],
)
def test_every_task_refuses_values_of_the_wrong_type(make_workspace, spec, good, bad, reason: str) -> None:
    """Issue 12: non-strings became training text, `inf` a target, a number a timestamp. Each task declares its
    columns' types (`TaskKind.column_types`); a value of another type refuses the drop with its row, never coerced."""
    ws = make_workspace({"m": spec})
    rows = [good, {**good, **bad}]
    if spec is CARS:
        rows[0] = {**good, "t": "2024-01-01T01:00"}
    with pytest.raises(DropRejected) as caught:
        ingest_rows(ws, "m", rows)
    problems = caught.value.problems
    assert [p.line for p in problems] == [2] and problems[0].reason.startswith(reason), problems


def test_forecasting_refuses_a_huge_gap_without_building_its_grid(make_workspace) -> None:
    """A minute-frequency series with points 100 years apart: its grid would be 52 million periods (400 MB); the
    gap over max_gap is found from the two stamps."""
    spec = {**CARS, "freq": "min", "id_column": None}
    ws = make_workspace({"m": spec})
    rows = [{"t": "1900-01-01T00:00:00", "v": 1}, {"t": "2000-01-01T00:00:00", "v": 2}]
    with pytest.raises(DropRejected, match=r"line 2: series 'series': more than 1 missing period\(s\) between 1900"):
        ingest_rows(ws, "m", rows)


def test_a_later_drop_supersedes_a_label_and_each_set_holds_a_text_once(make_workspace, sms, tmp_path: Path) -> None:
    """Issue 12: a later drop that relabelled a stored text was accepted silently and the test set kept both copies.
    Under the default `relabel: supersede` the latest label is used in train and test alike, the drop warns, `shoal
    data issues` lists the change, and neither set holds one text twice."""
    from typer.testing import CliRunner

    from shoal.cli import app
    from shoal.tasks import get_task

    ws = make_workspace({"spam": spam_model()})
    rows = sms.head(40).reset_index(drop=True)
    first = rows.copy()
    ingest_file(ws, "spam", write_rows(tmp_path / "test.csv", first.head(20)), split="test")
    ingest_file(ws, "spam", write_rows(tmp_path / "train.csv", first.tail(20)), split="train")
    flip = {"ham": "spam", "spam": "ham"}
    later = pd.DataFrame(
        {
            "text": [rows.loc[0, "text"].upper(), rows.loc[25, "text"], rows.loc[3, "text"], rows.loc[3, "text"]],
            "label": [
                flip[rows.loc[0, "label"]],
                flip[rows.loc[25, "label"]],
                rows.loc[3, "label"],
                rows.loc[3, "label"],
            ],
        }
    )
    result = ingest_file(ws, "spam", write_rows(tmp_path / "later.csv", later), split="test")
    assert any(w.startswith("2 stored text(s) relabelled") for w in result.warnings), result.warnings

    train, test, notes = get_task("text-classification").assemble(ws.registry.load_drops(ws.registry.drops("spam")))
    for part in (train, test):
        assert not part["text"].map(normalize).duplicated().any()
    labels = dict(zip(test["text"].map(normalize), test["label"], strict=True))
    assert labels[normalize(rows.loc[0, "text"])] == flip[rows.loc[0, "label"]]  # the test row's label superseded
    assert labels[normalize(rows.loc[25, "text"])] == flip[rows.loc[25, "label"]]  # now in test: out of training
    assert normalize(rows.loc[25, "text"]) not in set(train["text"].map(normalize))
    assert "2 text(s) relabelled by a later drop (the latest label is used)" in notes

    shown = json.loads(CliRunner().invoke(app, ["data", "issues", "spam", "--json", "-w", str(ws.root)]).output)
    assert shown["version"] is None and shown["issues"] == []
    changes = {normalize(r["text"]): [label for label, _ in r["history"]] for r in shown["relabelled"]}
    assert changes == {
        normalize(rows.loc[0, "text"]): [rows.loc[0, "label"], flip[rows.loc[0, "label"]]],
        normalize(rows.loc[25, "text"]): [rows.loc[25, "label"], flip[rows.loc[25, "label"]]],
    }


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("twice.csv", b"text,label,text\na,b,c\n", "line 1: the column 'text' appears twice in the header"),
        ("reserved.tsv", b"text\tlabel\t__line__\na\tb\t3\n", "line 1: the column name '__line__' is reserved"),
        ("reserved.jsonl", b'{"text": "a", "label": "b"}\n{"__line__": 1}\n', "line 2: the column name '__line__'"),
        ("deep.jsonl", b'{"text": "a", "label": "b"}\n' + b"[" * 100_000, "line 2: not valid JSON: nested too deeply"),
        ("digits.jsonl", b'{"text": "a", "label": ' + b"9" * 5000 + b"}", "line 1: not valid JSON: Exceeds the limit"),
        ("nan.jsonl", b'{"text": "a", "label": "b"}\n{"text": NaN, "label": "b"}', "line 2: not valid JSON: NaN is"),
    ],
)
def test_the_readers_refuse_what_they_cannot_read_with_its_line(
    make_workspace, tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    ws = make_workspace({"spam": spam_model()})
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DropRejected) as caught:
        ingest_file(ws, "spam", path)
    assert str(caught.value.problems[0]).startswith(reason), caught.value.problems


def test_a_parquet_column_named_twice_is_refused(make_workspace, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ws = make_workspace({"spam": spam_model()})
    table = pa.Table.from_arrays([pa.array(["a"]), pa.array(["b"]), pa.array(["c"])], names=["text", "label", "text"])
    path = tmp_path / "twice.parquet"
    pq.write_table(table, path)
    with pytest.raises(DropRejected, match="the column 'text' appears twice in the header"):
        ingest_file(ws, "spam", path)
