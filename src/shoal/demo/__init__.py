"""`shoal demo`: a real fleet from small public data shipped in the package, trained, promoted, served and
retrained live while you watch.

The demo is a script over the public faces only: the library for the first training, then `shoal serve` and
`shoal worker` as separate processes, and a file dropped in an inbox folder for the live retrain.
"""

from __future__ import annotations

import io
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import httpx
from rich.console import Console
from ruamel.yaml import YAML

from shoal.data.ingest import ingest_file
from shoal.pipelines.testset import ingest_pipeline_test
from shoal.workspace import Workspace

FAMILIES = ["majority", "tfidf-logreg", "tfidf-svm"]
FLEET = {
    "workspace": {"evaluation": {"latency_calls": 100, "bootstrap": 500}},
    "models": {
        "spam": {
            "task": "text-classification",
            "metric": "f1:spam",
            "labels": ["ham", "spam"],
            "families": FAMILIES,
            "retrain": {"min_new_rows": 1, "debounce_seconds": 2},
        },
        "banking77": {
            "task": "text-classification",
            "metric": "accuracy",
            "families": FAMILIES,
            "retrain": {"min_new_rows": 1, "debounce_seconds": 2},
        },
        "emotion": {
            "task": "text-classification",
            "metric": "macro_f1",
            "families": FAMILIES,
            "retrain": {"min_new_rows": 1, "debounce_seconds": 2},
        },
    },
    "pipelines": {
        "inbox": {
            "description": "a mixed inbox: the spam filter first; what is not spam gets its Banking77 intent",
            "steps": [{"model": "spam", "stop": {"label": ["spam"]}}, {"model": "banking77"}],
        },
    },
}
# the inbox pipeline's labelled test file, copied into the workspace and registered as the pipeline's test drop:
# held-out SMS texts (judged on spam) and Banking77 test texts (judged on spam = ham and on their intent)
PIPELINE_TEST = "inbox_test.csv"
# (model, file, split) ingested before the first training
FIRST_DROPS = [
    ("spam", "spam_first.csv", "auto"),
    ("banking77", "banking77_first.csv", "train"),
    ("banking77", "banking77_test.csv", "test"),
    ("emotion", "emotion_train.csv", "train"),
    ("emotion", "emotion_test.csv", "test"),
]
# (model, file) dropped into the inbox once the server and worker run
LIVE_DROP = ("banking77", "banking77_second.csv")


def data_file(name: str) -> Path:
    return Path(str(resources.files("shoal.demo") / "data" / name))


def _die_with_parent() -> None:
    """In a child process: receive SIGTERM when the demo process dies, however it dies (Linux)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class Demo:
    root: Path
    port: int
    console: Console
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def prepare(self, *, reset: bool) -> Workspace:
        if reset and self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        fleet = self.root / "shoal.yaml"
        if not fleet.exists():
            text = io.StringIO()
            YAML(typ="safe", pure=True).dump(FLEET, text)
            fleet.write_text("# the shoal demo fleet (see README.md)\n" + text.getvalue())
        if not (self.root / PIPELINE_TEST).exists():
            shutil.copy(data_file(PIPELINE_TEST), self.root / PIPELINE_TEST)
        ws = Workspace(self.root)
        for model, name, split in FIRST_DROPS:
            result = ingest_file(ws, model, data_file(name), split=split)  # type: ignore[arg-type]
            state = "stored" if result.created else "already stored"
            self.console.print(f"{state}: {model} <- {name} ({result.drop.n_rows} rows, split {split})")
        drop, created = ingest_pipeline_test(ws, "inbox", self.root / PIPELINE_TEST)
        state = "stored" if created else "already stored"
        self.console.print(f"{state}: pipeline inbox test set <- {PIPELINE_TEST} ({drop.n_rows} rows)")
        return ws

    def start(self, *args: str) -> None:
        command = [sys.executable, "-m", "shoal", *args, "-w", str(self.root)]
        self.processes.append(subprocess.Popen(command, start_new_session=True, preexec_fn=_die_with_parent))

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                raise RuntimeError("the server or the worker exited; see its output above")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the server was not ready within {timeout:.0f} s")

    def print_tour(self) -> None:
        body = '{"inputs": ["I still have not received my new card", "how do I top up by bank transfer?"]}'
        self.console.rule("[bold]shoal is serving")
        self.console.print(
            f"""\
  API docs (OpenAPI):  {self.url}/docs
  models:              curl -s {self.url}/v1/models
  predict:             curl -s -X POST {self.url}/v1/models/banking77/predict \\
                         -H 'content-type: application/json' -d '{body}'
  top-3 with probs:    curl -s -X POST {self.url}/v1/models/spam/predict -H 'content-type: application/json' \\
                         -d '{{"inputs": ["WINNER! claim your free prize now"], "top_k": 2}}'
  pipeline:            curl -s -X POST {self.url}/v1/pipelines/inbox/predict -H 'content-type: application/json' \\
                         -d '{{"inputs": ["WINNER! claim your free prize now", "my card has not arrived yet"]}}'
  pipeline eval:       shoal eval --pipeline inbox -w {self.root}
  pipeline history:    shoal history --pipeline inbox -w {self.root}
  metrics:             curl -s {self.url}/metrics
  history:             shoal history banking77 -w {self.root}
  inbox (drop files):  {self.root / "inbox" / "<model>"}""",
            highlight=False,
            soft_wrap=True,
        )

    def served_version(self, model: str) -> int | None:
        try:
            response = httpx.get(f"{self.url}/v1/models/{model}", timeout=5)
            return response.json().get("serving_version") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def live_retrain(self, ws: Workspace, timeout: float) -> bool:
        model, name = LIVE_DROP
        before = self.served_version(model)
        last_event = max((e.id for e in ws.registry.events()), default=0)
        inbox = ws.inbox(model)
        inbox.mkdir(parents=True, exist_ok=True)
        shutil.copy(data_file(name), inbox / name)
        self.console.rule(f"[bold]live retrain: dropped {name} into {inbox}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in ws.registry.events(model, after_id=last_event):
                last_event = event.id
                self.console.print(f"  [cyan]{event.kind}[/cyan] {event.message}", highlight=False, soft_wrap=True)
            served = self.served_version(model)
            if served is not None and served != before:
                self.console.print(
                    f"[green]the server now answers {model} with v{served} (was v{before}), with no restart[/green]"
                )
                return True
            time.sleep(1)
        self.console.print(f"[yellow]no new {model} version was served within {timeout:.0f} s[/yellow]")
        return False

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()
