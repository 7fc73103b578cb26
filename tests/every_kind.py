"""A workspace with one production model of every task kind, trained once per session on real public data with the
cheapest families that pass the gate: SMS spam (text classification), California housing (regression), monthly
car sales (forecasting), Banking77 pairs (embedding, the static encoder) and WNUT-17 sentences (token
classification, the CRF). Tests that only read copy it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import DATA, FAST_WORKSPACE, read_csv
from serve_fixtures import POLL_S
from shoal.data.ingest import ingest_file
from shoal.registry import PRODUCTION
from shoal.train.trainer import train_models
from shoal.workspace import REGISTRY_ENV, Workspace

NER_TYPES = ["person", "location", "group", "creative-work", "corporation", "product"]
SERVE = {"max_batch_size": 16, "max_inputs": 32, "max_input_chars": 2000}
FAST = {"cv_folds": 2, "serve": SERVE, "retrain": {"on_new_data": False}}
MODELS: dict[str, dict[str, Any]] = {
    "spam": {"task": "text-classification", "metric": "f1:spam", "families": ["majority", "tfidf-svm"], **FAST},
    "house": {"task": "regression", "target_column": "median_house_value", "families": ["mean", "ridge"], **FAST},
    "cars": {
        "task": "forecasting",
        "time_column": "Month",
        "value_column": "Sales",
        "freq": "MS",
        "horizon": 6,
        "families": ["seasonal-naive"],
        **FAST,
    },
    "embed": {"task": "embedding", "families": ["static-embed"], **FAST},
    "ner": {"task": "token-classification", "entity_types": NER_TYPES, "families": ["crf"], **FAST},
}
#: a valid input of each model, for the requests that must keep working
VALID: dict[str, Any] = {
    "spam": "are we still meeting for lunch tomorrow?",
    "house": {
        "longitude": -122.23,
        "latitude": 37.88,
        "housing_median_age": 41,
        "total_rooms": 880,
        "total_bedrooms": 129,
        "population": 322,
        "households": 126,
        "median_income": 8.3252,
        "ocean_proximity": "NEAR BAY",
    },
    "cars": "series",
    "embed": "my card has not arrived",
    "ner": "Taylor Swift played Wembley Stadium last night",
}


@dataclass
class EveryKind:
    root: Path


def pairs(train: pd.DataFrame, count: int = 240) -> pd.DataFrame:
    """Pairs of Banking77 queries: same intent (score 1) or not (score 0), half each."""
    rows = train[train["label"].isin(sorted(train["label"].unique())[:12])].groupby("label").head(20)
    rows = rows.reset_index(drop=True)
    rng = np.random.default_rng(0)
    out: list[dict[str, Any]] = []
    while len(out) < count:
        i, j = (int(k) for k in rng.integers(0, len(rows), 2))
        same = len(out) % 2 == 0
        if same:
            j = int(rng.choice(np.flatnonzero(rows["label"] == rows.loc[i, "label"])))
        if i == j or (rows.loc[i, "label"] == rows.loc[j, "label"]) != same:
            continue
        out.append({"text": rows.loc[i, "text"], "text_pair": rows.loc[j, "text"], "score": int(same)})
    return pd.DataFrame(out)


@pytest.fixture(scope="session")
def every_kind(tmp_path_factory: pytest.TempPathFactory) -> EveryKind:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tokenizers")
    root = tmp_path_factory.mktemp("every_kind") / "ws"
    root.mkdir()
    fleet = {
        "workspace": {**FAST_WORKSPACE, "n_jobs": 1, "server": {"poll_interval_s": POLL_S}},
        "models": MODELS,
    }
    (root / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    data = {
        "spam": read_csv("sms_spam/sms_spam.csv").iloc[:400],
        "house": read_csv("california_housing/housing.csv").iloc[:800],
        "cars": read_csv("monthly_car_sales/monthly-car-sales.csv"),
        "embed": pairs(read_csv("banking77/train.csv")),
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(REGISTRY_ENV, raising=False)
        ws = Workspace(root)
        for name, frame in data.items():
            path = root / f"{name}.csv"
            frame.to_csv(path, index=False)
            ingest_file(ws, name, path)
        ingest_file(ws, "ner", wnut17_sentences(root / "ner.conll", 400))
        reports = train_models(ws)
        # the static encoder beats the word-overlap floor, but not significantly on so few pairs: promote it by
        # hand, as `shoal promote embed 2` would (only its codec matters here)
        # the same for the CRF, trained on a few hundred sentences
        for name, family in (("embed", "static-embed"), ("ner", "crf")):
            if ws.registry.alias(name, PRODUCTION) is None:
                [version] = [v.number for v in ws.registry.versions(name) if v.family == family]
                ws.registry.set_alias(name, version, actor="manual", reason=f"the tests need a {name} model")
        production = {name: ws.registry.alias(name, PRODUCTION) for name in MODELS}
        ws.close()
    assert all(report.error is None for report in reports), [r.error for r in reports]
    assert None not in production.values(), production
    return EveryKind(root)


def wnut17_sentences(path: Path, count: int) -> Path:
    """The first `count` sentences of WNUT-17's training file, as a CoNLL file at `path`."""
    source = DATA / "wnut17" / "train.conll"
    if not source.exists():
        pytest.fail(f"shared data missing: {source}")
    blocks = [b for b in source.read_text(encoding="utf-8").replace("\t\n", "\n").split("\n\n") if b.strip()]
    path.write_text("\n\n".join(blocks[:count]) + "\n", encoding="utf-8")
    return path


def copy_every_kind(source: EveryKind, folder: Path) -> Workspace:
    root = folder / "ws"
    shutil.copytree(source.root, root)
    return Workspace(root)
