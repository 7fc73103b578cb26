"""`shoal label --teacher llm`: an LLM endpoint labels unlabeled texts into a training drop with its provenance —
with the scripted OpenAI-compatible server (answers a test controls: labels outside the set, the spend cap) and
with llama.cpp's server and SmolLM2 (constrained output, the cache on a re-run, the cap)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import spam_model
from local_llm import local_llm
from scripted_llm import Script, scripted_llm
from shoal.cli import app
from shoal.data.assembled import assembled
from shoal.data.ingest import ingest_frame
from shoal.data.readers import LINE
from shoal.fleet import FleetError
from shoal.llm.prompt import DEFAULT_PROMPT, Prompt
from shoal.registry import schema as t
from shoal.report.data import model_report
from shoal.tasks.text_classification import normalize
from shoal.train.errors import TrainError
from shoal.train.teach import label
from shoal.workspace import Workspace


@pytest.fixture
def script() -> Iterator[Script]:
    with scripted_llm() as script:
        yield script


def _workspace(
    make_workspace: Callable[..., Workspace],
    url: str,
    rows: pd.DataFrame | None,
    model: dict[str, Any] | None = None,
    **llm: Any,
) -> Workspace:
    ws = make_workspace({"spam": spam_model(**(model or {}))})
    fleet = yaml.safe_load((ws.root / "shoal.yaml").read_text())
    fleet["llm"] = {"teacher": {"base_url": url, "model": "scripted", "backoff_s": 0.01, **llm}}
    (ws.root / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False))
    ws = Workspace(ws.root)
    if rows is not None:
        ingest_frame(ws, "spam", rows.assign(**{LINE: range(2, len(rows) + 2)}), source="human.csv", split="auto")
    return ws


def _unlabeled(path: Path, texts: list[str]) -> Path:
    pd.DataFrame({"text": texts}).to_csv(path, index=False)
    return path


def _fresh(sms: pd.DataFrame, start: int, stop: int, *known: pd.DataFrame) -> list[str]:
    """The texts of rows start:stop that are not in `known` nor repeated (after normalization), in order."""
    seen = {normalize(text) for frame in known for text in frame["text"]}
    fresh = []
    for text in sms["text"].iloc[start:stop]:
        if normalize(text) not in seen:
            seen.add(normalize(text))
            fresh.append(text)
    return fresh


def _gold(sms: pd.DataFrame) -> Callable[[str], str]:
    truth = dict(zip(sms["text"], sms["label"], strict=True))
    return lambda text: truth[text]


def test_an_llm_labels_new_texts_into_a_drop_with_provenance(
    make_workspace: Callable[..., Workspace], sms: pd.DataFrame, script: Script, tmp_path: Path
) -> None:
    ws = _workspace(make_workspace, script.url, sms.iloc[:600])
    test_before = assembled(ws, "spam").test  # type: ignore[union-attr]
    script.label = _gold(sms)
    script.plan.extend([("content", '{"label": "eggs"}'), ("content", "maybe spam")])  # two answers off the set
    fresh = _fresh(sms, 600, 800, sms.iloc[:600])
    path = _unlabeled(tmp_path / "unlabeled.csv", [*fresh, *sms["text"].iloc[:40]])  # 40 texts already known
    result = label(ws, "spam", "llm", path)

    assert result.teacher == "llm:teacher" and result.known >= 40
    assert result.outcomes == {"ok": len(fresh) - 2, "invalid": 2}
    assert set(script.texts()) == set(fresh)  # the known texts were never sent
    assert result.ingest is not None and result.ingest.created
    drop = ws.registry.drops("spam")[-1]
    assert (drop.n_train, drop.n_test) == (len(fresh) - 2, 0)  # never test rows: the model has human test rows
    stored = ws.registry.load_drops([drop])
    assert all(script.label(text) == got for text, got in zip(stored["text"], stored["label"], strict=True))
    provenance = drop.provenance
    assert provenance is not None
    assert provenance["kind"] == "teacher" and provenance["teacher"] == "llm:teacher"
    assert provenance["prompt_hash"] == Prompt(DEFAULT_PROMPT, ("ham", "spam")).hash
    assert provenance["confidence"] == [None] * len(stored) and provenance["outcomes"] == result.outcomes
    after = assembled(ws, "spam")
    assert after is not None and after.test.equals(test_before)  # the frozen test set is unchanged

    sent = len(script.requests)
    again = label(ws, "spam", "llm", path)  # the texts stored are known now: only the two left out are asked
    assert again.known == result.known + len(fresh) - 2 and again.outcomes == {"ok": 2}
    assert len(script.requests) == sent + 2


class Interrupted(Exception):
    pass


def _interrupt_after(chunks: int) -> Callable[[int, int], None]:
    calls = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == chunks:
            raise Interrupted

    return progress


def test_a_run_stopped_midway_is_answered_by_the_cache_when_run_again(
    make_workspace: Callable[..., Workspace],
    sms: pd.DataFrame,
    script: Script,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("shoal.llm.teach.CHUNK", 50)
    ws = _workspace(make_workspace, script.url, sms.iloc[:300])
    fresh = _fresh(sms, 300, 600, sms.iloc[:300])[:120]
    path = _unlabeled(tmp_path / "u.csv", fresh)
    with pytest.raises(Interrupted):  # stopped (Ctrl-C, a crash) after the first chunk: nothing stored
        label(ws, "spam", "llm", path, progress=_interrupt_after(1))
    assert len(ws.registry.drops("spam")) == 1 and len(script.requests) == 50
    again = label(ws, "spam", "llm", path)
    assert again.outcomes == {"cached": 50, "ok": 70} and len(script.requests) == 120
    assert again.ingest is not None and again.ingest.drop.n_rows == 120


def test_a_model_without_human_test_rows_is_judged_against_the_teacher_until_it_has_some(
    make_workspace: Callable[..., Workspace], sms: pd.DataFrame, script: Script, tmp_path: Path
) -> None:
    ws = _workspace(make_workspace, script.url, None, {"labels": ["ham", "spam"]})  # cold start: no data at all
    script.label = _gold(sms)
    texts = _fresh(sms, 0, 400)
    result = label(ws, "spam", "llm:teacher", _unlabeled(tmp_path / "u.csv", texts))
    assert result.judged_by_teacher and result.ingest is not None and result.ingest.drop.n_test > 0
    found = assembled(ws, "spam")
    assert found is not None and len(found.test) == result.ingest.drop.n_test
    note = "no human-labelled test rows: quality is measured against the teacher's labels (llm:teacher)"
    assert note in found.notes
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "spam", "-w", str(ws.root)])
    assert trained.exit_code == 0, trained.output
    assert note in " ".join(trained.output.split())
    assert ws.registry.alias("spam", "production") is not None, trained.output
    shown = runner.invoke(app, ["eval", "spam", "-w", str(ws.root)])
    assert shown.exit_code == 0 and note in " ".join(shown.output.split()), shown.output
    assert model_report(Workspace(ws.root), "spam")["test_labels"] == note

    human = sms[sms["text"].isin(_fresh(sms, 1000, 1400, sms.iloc[:400]))]
    ingest_frame(ws, "spam", human.assign(**{LINE: range(2, len(human) + 2)}), source="gold.csv", split="test")
    found = assembled(ws, "spam")
    assert found is not None and not any("measured against" in note for note in found.notes)
    assert any("labelled by an LLM or a teacher moved to training" in note for note in found.notes)
    assert set(found.test["text"]) == set(human["text"])  # the teacher's test rows went to training
    assert set(texts) <= set(found.train["text"])


def test_the_spend_cap_stops_labelling_and_the_command_says_so(
    make_workspace: Callable[..., Workspace], sms: pd.DataFrame, script: Script, tmp_path: Path
) -> None:
    # $0.001 a request (1,000 prompt tokens at $1 per million): the cap is reached after the third
    ws = _workspace(
        make_workspace, script.url, sms.iloc[:300], price_in=1.0, max_cost_per_day=0.0025, max_concurrency=1
    )
    fresh = _fresh(sms, 300, 400, sms.iloc[:300])[:40]
    path = _unlabeled(tmp_path / "u.csv", fresh)
    done = CliRunner().invoke(app, ["label", "spam", "--teacher", "llm", "--unlabeled", str(path), "-w", str(ws.root)])
    assert done.exit_code == 0, done.output
    output = " ".join(done.output.split())
    assert len(script.requests) == 3
    assert "LLM answers: 37 capped, 3 ok; $0.0030 spent" in output
    assert "the endpoint's daily spend cap is reached: 37 texts were not labelled" in output
    assert "stored: drop" in output and ": 3 teacher-labelled training rows" in output

    refused = CliRunner().invoke(
        app,
        ["label", "spam", "--teacher", "llm", "--unlabeled", str(path), "--min-confidence", "0.5", "-w", str(ws.root)],
    )
    assert isinstance(refused.exception, TrainError) and "an LLM's label has none" in str(refused.exception)
    unknown = CliRunner().invoke(
        app, ["label", "spam", "--teacher", "llm:nope", "--unlabeled", str(path), "-w", str(ws.root)]
    )
    assert isinstance(unknown.exception, FleetError)
    assert "no LLM endpoint 'nope' in the fleet file's llm: section (endpoints: teacher)" in str(unknown.exception)


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_llm(tmp_path_factory.mktemp("llm")) as url:
        yield url


def test_label_with_a_real_local_llm(
    make_workspace: Callable[..., Workspace],
    sms: pd.DataFrame,
    smollm2: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SmolLM2 behind llama.cpp's server: every stored label is of the set (the JSON-schema enum), a run stopped
    midway is answered by the cache when run again, and the daily cap stops it (each request costs more than the
    cap: $10,000 per million prompt tokens)."""
    ws = _workspace(make_workspace, smollm2, sms.iloc[:300], timeout_s=120, max_concurrency=1)
    monkeypatch.setattr("shoal.llm.teach.CHUNK", 3)
    texts = _fresh(sms, 300, 320, sms.iloc[:300])[:6]
    path = _unlabeled(tmp_path / "u.csv", texts)
    with pytest.raises(Interrupted):
        label(ws, "spam", "llm", path, progress=_interrupt_after(1))
    with ws.registry.engine.connect() as conn:
        assert len(conn.execute(t.llm_cache.select()).all()) == 3
    first = label(ws, "spam", "llm", path)
    assert first.outcomes == {"cached": 3, "ok": 3}, first.outcomes  # no answer outside the set: the schema held
    stored = ws.registry.load_drops([ws.registry.drops("spam")[-1]])
    assert len(stored) == len(texts) and set(stored["label"]) <= {"ham", "spam"}

    fleet = yaml.safe_load((ws.root / "shoal.yaml").read_text())
    fleet["llm"]["teacher"].update(price_in=10000.0, max_cost_per_day=0.01)
    (ws.root / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False))
    more = _unlabeled(tmp_path / "v.csv", _fresh(sms, 400, 420, sms.iloc[:320])[:5])
    capped = label(Workspace(ws.root), "spam", "llm", more)
    assert capped.outcomes == {"ok": 1, "capped": 4}, capped.outcomes
    assert capped.ingest is not None and capped.ingest.drop.n_rows == 1
    assert capped.ingest.drop.provenance is not None and capped.ingest.drop.provenance["outcomes"] == capped.outcomes


def test_provenance_is_written_with_its_drop(registry_url: str, tmp_path: Path) -> None:
    """On SQLite and PostgreSQL: a drop's provenance comes back with it; a human-labelled drop has none."""
    from shoal.registry import Registry

    registry = Registry(registry_url, tmp_path / "artifacts")
    try:
        rows = pd.DataFrame({"text": ["a b", "c d"], "label": ["x", "y"], "split": ["train", "train"]})
        provenance = {"kind": "teacher", "teacher": "llm:t", "prompt_hash": "p" * 64, "confidence": [None, 0.5]}
        registry.add_drop(
            "m",
            "text-classification",
            rows,
            content_hash="1" * 64,
            source="s",
            split="train",
            warnings=[],
            provenance=provenance,
        )
        registry.add_drop(
            "m",
            "text-classification",
            rows.assign(label="x"),
            content_hash="2" * 64,
            source="h",
            split="train",
            warnings=[],
        )
        assert [drop.provenance for drop in registry.drops("m")] == [provenance, None]
        ingested = [event.payload.get("provenance") for event in registry.events("m") if event.kind == "ingested"]
        assert ingested == ["teacher", None]
    finally:
        registry.close()
