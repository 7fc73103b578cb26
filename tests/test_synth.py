"""`shoal synth`: the scripted OpenAI-compatible server writes examples per label (real Banking77 texts the model has
not seen, and one of each kind the validation must drop) and re-labels them as the teacher; each reason is counted,
only the rest is stored, as training rows with their provenance, and a re-run is answered by the cache."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from scripted_llm import Script, scripted_llm
from shoal.cli import app
from shoal.data.assembled import assembled
from shoal.data.ingest import ingest_frame
from shoal.data.readers import LINE
from shoal.fleet import FleetError
from shoal.train.synth import REASONS, synth
from shoal.workspace import Workspace

LABELS = ["card_arrival", "exchange_rate", "lost_or_stolen_card", "card_linking"]
SHOTS = 10


@pytest.fixture
def script() -> Iterator[Script]:
    with scripted_llm() as script:
        yield script


class Data:
    """A 10-shot slice of Banking77 over `LABELS`: the model's training and test rows, and held-out real texts."""

    def __init__(self, banking: tuple[pd.DataFrame, pd.DataFrame]) -> None:
        train, test = (frame[frame["label"].isin(LABELS)] for frame in banking)
        self.train = train.groupby("label").head(SHOTS)
        self.test = test.groupby("label").head(20)
        held_out = train.drop(self.train.index)
        self.held_out = held_out[held_out["text"].str.len() >= 45]  # long texts: none is near another of the data
        self.gold = dict(zip(banking[0]["text"], banking[0]["label"], strict=True))
        self.gold.update(zip(banking[1]["text"], banking[1]["label"], strict=True))

    def unseen(self, label: str, k: int, skip: int = 0) -> list[str]:
        return self.held_out.loc[self.held_out["label"] == label, "text"].iloc[skip : skip + k].tolist()


def _bad(data: Data, label: str) -> list[str]:
    """One generated text per way to fail, besides the two good ones, for `label`."""
    trained = data.train.loc[data.train["label"] == label, "text"].tolist()
    tested = data.test.loc[data.test["label"] == label, "text"].tolist()
    good = data.unseen(label, 3)
    other = data.unseen(LABELS[(LABELS.index(label) + 1) % len(LABELS)], 1, skip=5)[0]
    return [
        *good[:2],
        good[0],  # duplicate: of an earlier generated text
        f"  {trained[0].upper()} ",  # duplicate: of a training text (the same after normalization)
        tested[0],  # duplicate-of-test
        f"{trained[1].rstrip('?.! ')}!!",  # near-duplicate
        f"{tested[1].rstrip('?.! ')}!!",  # near-duplicate-of-test
        "my card " * 120,  # length
        "我的银行卡什么时候能寄到我家里呢",  # language
        f"{good[2]}\x00",  # invalid-text
        other,  # teacher-disagrees: a real text of another label
        f"{good[2]} NOLABEL",  # teacher-no-label: the teacher answers outside the set
    ]


EXPECTED = {
    "duplicate": 2,
    "duplicate-of-test": 1,
    "near-duplicate": 1,
    "near-duplicate-of-test": 1,
    "length": 1,
    "language": 1,
    "invalid-text": 1,
    "teacher-disagrees": 1,
    "teacher-no-label": 1,
}


def _script(script: Script, data: Data, written: dict[str, list[str]]) -> None:
    def content(body: dict[str, Any]) -> str:
        system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
        if "new training examples" in system:  # the generator
            label = re.search(r"^Label: (.+)$", user, re.M)[1]  # type: ignore[index]
            return json.dumps({"examples": written[label]})
        if "NOLABEL" in user:
            return '{"label": "none of them"}'
        return json.dumps({"label": data.gold[user]})

    script.content = content


def _workspace(make_workspace: Callable[..., Workspace], url: str, data: Data) -> Workspace:
    model = {"task": "text-classification", "families": ["tfidf-logreg"]}
    ws = make_workspace({"intents": model})
    fleet = yaml.safe_load((ws.root / "shoal.yaml").read_text())
    fleet["llm"] = {"writer": {"base_url": url, "model": "scripted", "backoff_s": 0.01}}
    (ws.root / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False))
    ws = Workspace(ws.root)
    for frame, split in ((data.train, "train"), (data.test, "test")):
        ingest_frame(
            ws, "intents", frame.assign(**{LINE: range(2, len(frame) + 2)}), source=f"{split}.csv", split=split
        )
    return ws


def test_every_generated_text_is_validated_and_each_reason_counted(
    make_workspace: Callable[..., Workspace], banking: tuple[pd.DataFrame, pd.DataFrame], script: Script
) -> None:
    data = Data(banking)
    ws = _workspace(make_workspace, script.url, data)
    written = {label: data.unseen(label, 2) for label in LABELS}
    written[LABELS[0]] = _bad(data, LABELS[0])
    _script(script, data, written)
    test_before = assembled(ws, "intents").test  # type: ignore[union-attr]

    result = synth(ws, "intents", per_label=12, batch=12, seeds=3)

    assert dict(result.dropped) == EXPECTED
    assert set(result.dropped) <= set(REASONS)
    assert result.generated == 12 + 2 * 3 and result.kept == 2 * 4 and result.outcomes == {"ok": 4}
    generation = [
        seen.body for seen in script.requests if "new training examples" in seen.body["messages"][0]["content"]
    ]
    assert len(generation) == 4 and all(b["response_format"]["json_schema"]["name"] == "examples" for b in generation)
    seeds = [line[2:] for line in generation[0]["messages"][-1]["content"].splitlines() if line.startswith("- ")]
    assert len(seeds) == 3 and all(json.loads(seed) in set(data.train["text"]) for seed in seeds)

    drop = ws.registry.drops("intents")[-1]
    assert result.ingest is not None and drop.hash == result.ingest.drop.hash and drop.n_test == 0
    stored = ws.registry.load_drops([drop])
    expected_rows = {(text, label) for label in LABELS for text in data.unseen(label, 2)}
    assert set(zip(stored["text"], stored["label"], strict=True)) == expected_rows
    provenance = drop.provenance
    assert provenance is not None and provenance["kind"] == "synth" and provenance["generator"] == "llm:writer"
    assert provenance["teacher"] == "llm:writer" and provenance["dropped"] == EXPECTED
    assert len(provenance["confidence"]) == len(stored) and provenance["generated"] == result.generated
    after = assembled(ws, "intents")
    assert after is not None and after.test.equals(test_before)

    sent = len(script.requests)
    again = synth(ws, "intents", per_label=12, batch=12, seeds=3)  # the same real seeds: answered by the cache
    assert again.outcomes == {"cached": 4} and again.teacher_outcomes == {"cached": 1, "invalid": 1}
    assert again.kept == 0 and again.ingest is None  # the texts kept before are in the training data now
    assert again.dropped["duplicate"] == EXPECTED["duplicate"] + 8
    assert len(script.requests) == sent + 1  # only the teacher's invalid answer is asked again


def test_the_command_reports_what_was_kept_and_why_the_rest_was_dropped(
    make_workspace: Callable[..., Workspace], banking: tuple[pd.DataFrame, pd.DataFrame], script: Script
) -> None:
    data = Data(banking)
    ws = _workspace(make_workspace, script.url, data)
    written = {label: _bad(data, label) for label in LABELS}
    _script(script, data, written)
    args = ["synth", "intents", "--per-label", "12", "--batch", "12", "-w", str(ws.root)]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    output = " ".join(done.output.split())
    assert "generator llm:writer: 48 texts asked for, 48 written (requests: 4 ok); teacher llm:writer" in output
    assert "kept 8 of 48 (17%)" in output
    for reason, count in EXPECTED.items():
        assert f"dropped {4 * count}: {reason}" in output
    assert ": 8 generated training rows" in output

    none = CliRunner().invoke(app, ["synth", "intents", "--per-label", "1", "--generator", "llm:x", "-w", str(ws.root)])
    assert isinstance(none.exception, FleetError) and "no LLM endpoint 'x'" in str(none.exception)
