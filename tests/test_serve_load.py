"""What a `shoal serve` process costs before and while it loads models, in a real server process: it imports no
training stack (scikit-learn, SciPy, pandas, pyarrow) before a model needs it, and loading a large TF-IDF model
during a hot swap leaves the event loop free to answer (the load runs in a thread and never holds the GIL for long).
Behaviour, not benchmarks: thresholds are generous; benchmarks/serve_swap.py and benchmarks/startup.py measure."""

from __future__ import annotations

import random
import shutil
import string
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from conftest import FAST_WORKSPACE
from metrics_fixture import metrics_of
from processes import shoal_serve
from serve_fixtures import Trained, copy_workspace
from shoal.families import get_family
from shoal.workspace import Workspace

HEAVY = ("/sklearn/", "/scipy/", "/pandas/", "/pyarrow/")
#: the longest any /healthz may take while a large model loads: about 0.03 s on a loaded 2-core machine; loading
#: the same model saved as shoal did before (skops parsing each vocabulary entry's node) stalled it 0.6-1 s
STALL_LIMIT_S = 0.4


@contextmanager
def serve(root: Path) -> Iterator[tuple[str, psutil.Process]]:
    """`shoal serve` in its own process (and session), ready; yields its URL and process."""
    with shoal_serve(root, ready_within=120, quiet=True) as served:
        yield served


def heavy_files(process: psutil.Process) -> list[str]:
    """The training stack's libraries mapped into the process (its extension modules: one per imported package)."""
    maps = Path(f"/proc/{process.pid}/maps").read_text(encoding="utf-8")
    return sorted({line.split()[-1] for line in maps.splitlines() if any(h in line for h in HEAVY)})


def wait_for(condition: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(0.05)


def test_the_server_imports_the_training_stack_only_once_a_model_needs_it(trained: Trained, tmp_path: Path) -> None:
    ws = copy_workspace(trained, tmp_path)
    fleet_file = ws.fleet_path.read_text(encoding="utf-8")
    fleet = yaml.safe_load(fleet_file)
    models = fleet.pop("models")
    ws.fleet_path.write_text(yaml.safe_dump(fleet), encoding="utf-8")  # spam is in production, not in the fleet
    ws.close()
    with serve(ws.root) as (url, process):
        assert httpx.get(f"{url}/readyz").json()["models"] == {}
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert heavy_files(process) == []
        ws.fleet_path.write_text(yaml.safe_dump({**fleet, "models": models}), encoding="utf-8")
        assert httpx.post(f"{url}/v1/reload", timeout=60).json() == {"models": {"spam": "ready"}}
        answer = httpx.post(f"{url}/v1/models/spam/predict", json={"inputs": ["WIN a prize now"]})
        assert answer.status_code == 200
        # the probe sees an import: the TF-IDF model brought scikit-learn and SciPy
        assert any("/sklearn/" in f for f in heavy_files(process)) and any("/scipy/" in f for f in heavy_files(process))


def _words(rng: random.Random, count: int) -> str:
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=7)) for _ in range(count))


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """A workspace with two registered versions of a TF-IDF model with a large vocabulary (random words: most
    word and char n-grams occur once), the first in production."""
    rng = random.Random(0)
    texts = [_words(rng, 16) for _ in range(1500)]
    labels = [rng.choice(["a", "b"]) for _ in texts]
    root = tmp_path_factory.mktemp("large")
    fleet = {
        "workspace": {**FAST_WORKSPACE, "server": {"poll_interval_s": 0.1}},
        "models": {"big": {"task": "text-classification", "families": ["tfidf-logreg"]}},
    }
    (root / "shoal.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False), encoding="utf-8")
    ws = Workspace(root)
    family, numbers = get_family("tfidf-logreg"), []
    try:
        registry = ws.registry
        registry.ensure_model("big", "text-classification")
        for c in (3.0, 20.0):
            staged = registry.artifacts.stage()
            try:
                family.fit(texts, labels, {"C": c}, 0).save(staged)
                version, _ = registry.register_version(
                    "big",
                    family="tfidf-logreg",
                    params={"C": c},
                    dataset_version="large-vocabulary",
                    code_version="test",
                    metrics=metrics_of("accuracy", {"accuracy": 0.5}),
                    staged=staged,
                    test_hash="",
                    label_error_rate=None,
                )
            finally:
                shutil.rmtree(staged, ignore_errors=True)
            numbers.append(version.number)
        registry.set_alias("big", numbers[0], actor="manual", reason="load test")
    finally:
        ws.close()
    return root, numbers


def test_the_event_loop_answers_while_a_large_model_loads(large: tuple[Path, list[int]]) -> None:
    """Four hot swaps between two large versions while /healthz is asked every 10 ms: every answer comes within
    STALL_LIMIT_S, and every swap happens."""
    root, numbers = large
    ws = Workspace(root)
    latencies: list[float] = []
    stop = threading.Event()
    with serve(root) as (url, _):

        def ping() -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    started = time.perf_counter()
                    assert client.get(f"{url}/healthz").status_code == 200
                    latencies.append(time.perf_counter() - started)
                    time.sleep(0.01)

        pinger = threading.Thread(target=ping, daemon=True)
        pinger.start()
        try:
            for number in [numbers[1], numbers[0], numbers[1], numbers[0]]:
                ws.registry.set_alias("big", number, actor="manual", reason="load test")
                serving = lambda n=number: httpx.get(f"{url}/v1/models/big").json()["serving_version"] == n  # noqa: E731
                wait_for(serving, f"v{number} was not served")
        finally:
            stop.set()
            pinger.join(30)
            ws.close()
        swaps = httpx.get(f"{url}/v1/models/big").json()["swap"]["swaps"]
    assert swaps == 5  # the first load and four swaps
    assert len(latencies) > 20
    assert max(latencies) < STALL_LIMIT_S, f"/healthz took {max(latencies):.2f} s while a model loaded"
