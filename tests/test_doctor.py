"""`shoal doctor` on a real trained workspace: a healthy one passes; a damaged one has each problem reported with
what to do, and `--repair` fixes only what is safe (never a live process's staging folder, never a file younger
than the grace period, never an alias), moving unreferenced files aside so a late row gets its folder back."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from serve_fixtures import Trained, copy_workspace
from shoal.data.ingest import content_hash
from shoal.doctor import ORPHANS, examine
from shoal.registry.jobs import QUEUED, TRAIN, JobQueue
from shoal.workspace import Workspace


def doctor(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "shoal", "doctor", "-w", str(ws.root), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def problems(ws: Workspace, **options: object) -> dict[str, list[str]]:
    return {c.name: c.problems for c in examine(ws, **options).checks if c.problems}  # type: ignore[arg-type]


def staged_by_a_dead_process(ws: Workspace) -> Path:
    """A staging folder whose owner record names a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=60)
    folder = ws.registry.artifacts.stage()
    record = ws.artifact_root / ".staging-owners" / folder.name
    record.write_text(json.dumps({**json.loads(record.read_text()), "pid": process.pid}))
    return folder


def test_a_healthy_workspace_passes_with_exit_code_0(trained: Trained, tmp_path: Path) -> None:
    ws = copy_workspace(trained, tmp_path)
    done = doctor(ws)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "healthy" in done.stdout and "2 verified" in done.stdout
    report = json.loads(doctor(ws, "--json").stdout)
    assert report["healthy"] and {c["name"] for c in report["checks"]} == {
        "staging folders",
        "version artifacts",
        "drop files",
        "unreferenced files",
        "aliases",
        "jobs",
    }


def test_a_damaged_store_is_reported_and_only_what_is_safe_is_repaired(trained: Trained, tmp_path: Path) -> None:
    ws = copy_workspace(trained, tmp_path)
    registry, root = ws.registry, ws.artifact_root
    production = registry.version("spam", trained.production)
    folder = registry.artifacts.path(production.artifact_uri)
    next(p for p in folder.rglob("*") if p.is_file()).write_bytes(b"bit rot")
    [drop] = registry.drops("spam")
    pd.DataFrame({"text": ["other"], "label": ["ham"], "split": ["train"]}).to_parquet(
        registry.artifacts.path(drop.uri)
    )
    dead, live = staged_by_a_dead_process(ws), registry.artifacts.stage()
    orphan = folder.with_name("tfidf-logreg-left-by-a-kill")
    shutil.copytree(registry.artifacts.path(registry.version("spam", trained.other).artifact_uri), orphan)
    partial = registry.artifacts.path(drop.uri).with_name(".half.parquet.123.tmp")
    partial.write_bytes(b"PAR1")
    queue = JobQueue(registry)
    queue.enqueue("spam", TRAIN, "dataset", "a test")
    queue.claim("a-dead-worker", lease_seconds=-1)

    done = doctor(ws)
    assert done.returncode == 1, done.stdout + done.stderr
    for words in ("its process is gone", "was changed after it was registered", "holds other rows", "to fix:"):
        assert words in done.stdout
    found = problems(ws)
    assert set(found) == {"staging folders", "version artifacts", "drop files", "unreferenced files", "aliases", "jobs"}
    assert found["aliases"] == [
        f"spam production -> v{trained.production}, which does not verify; to fix: shoal promote spam {trained.other}"
    ]

    repaired = examine(ws, repair=True)  # the default grace: the fresh leftovers stay where they are
    assert [c.repaired for c in repaired.checks if c.name == "staging folders"] == [[f"removed .staging/{dead.name}"]]
    assert not dead.exists() and live.exists()  # a running process's folder is never touched
    assert orphan.exists() and partial.exists()
    assert [job.status for job in queue.jobs("spam")] == [QUEUED] and queue.expired() == []
    assert registry.alias("spam") == trained.production  # an alias is never moved by the doctor
    assert set(problems(ws)) == {"version artifacts", "drop files", "unreferenced files", "aliases"}

    examine(ws, repair=True, grace_seconds=0)
    assert not partial.exists() and not orphan.exists()
    assert len(list((root / ORPHANS).glob(f"*/models/spam/{orphan.name}"))) == 1  # moved aside, not deleted
    assert "1 set aside earlier" in doctor(ws).stdout
    assert set(problems(ws)) == {"version artifacts", "drop files", "aliases"}  # what only a person can fix
    assert doctor(ws, "--repair").returncode == 1


def test_a_folder_set_aside_goes_back_when_a_row_refers_to_it(trained: Trained, tmp_path: Path) -> None:
    """A registration slower than the grace period: the doctor moved its folder aside before its row was written;
    the next repair puts the folder back where the row points."""
    ws = copy_workspace(trained, tmp_path)
    version = ws.registry.version("spam", trained.other)
    folder = ws.registry.artifacts.path(version.artifact_uri)
    aside = ws.artifact_root / ORPHANS / "20260101T000000" / folder.relative_to(ws.artifact_root)
    aside.parent.mkdir(parents=True)
    folder.rename(aside)
    assert "version artifacts" in problems(ws)
    [check] = [c for c in examine(ws, repair=True).checks if c.name == "version artifacts"]
    assert check.repaired == [f"spam v{trained.other} ({version.family}): moved its folder back from {ORPHANS}/"]
    assert examine(ws).healthy and folder.is_dir()


def test_repair_keeps_live_pipeline_test_drops_and_sets_aside_only_unreferenced_ones(
    trained: Trained, tmp_path: Path
) -> None:
    ws = copy_workspace(trained, tmp_path)
    registry = ws.registry
    rows = pd.DataFrame({"text": ["win a prize", "my card is late"], "spam": ["spam", "ham"]}, dtype=object)
    drop, _ = registry.add_pipeline_drop("inbox", rows, content_hash=content_hash(rows), source="inbox.csv")
    live = registry.artifacts.path(drop.uri)
    left = live.with_name("left-by-a-kill.parquet")
    rows.iloc[:1].to_parquet(left)

    assert problems(ws, grace_seconds=0) == {
        "unreferenced files": ["pipelines/inbox/left-by-a-kill.parquet: no row refers to it"]
    }
    examine(ws, repair=True, grace_seconds=0)
    assert live.is_file() and not left.exists()  # the live test set stays, the leftover is set aside
    assert len(list((ws.artifact_root / ORPHANS).glob("*/pipelines/inbox/left-by-a-kill.parquet"))) == 1
    assert problems(ws, grace_seconds=0) == {}
    assert registry.load_pipeline_drop(drop).to_dict("list") == rows.to_dict("list")

    pd.DataFrame({"text": ["other"], "spam": ["ham"]}).to_parquet(live)
    assert problems(ws)["drop files"] == [
        f"pipeline inbox test drop {drop.hash[:12]}: its file {live} holds other rows than its hash names"
    ]
