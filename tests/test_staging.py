"""Staging folders and pool workers after kill -9: a staged folder records its owner, so the next run removes only
the folders of dead processes (never a live trainer's), and the CV search's pool workers die with their trainer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import spam_model, write_rows
from processes import assert_gone, assert_store_consistent, paused_pid, process_tree
from shoal.data.ingest import ingest_file
from shoal.faults import PAUSE_AT_ENV, PAUSE_FILE_ENV
from shoal.registry.artifacts import OWNERS, UNOWNED_STALE_SECONDS, ArtifactStore

# a process that stages a folder, prints its path and waits (until its stdin closes)
STAGE_AND_WAIT = """
import sys
from pathlib import Path
from shoal.registry.artifacts import ArtifactStore
folder = ArtifactStore(Path(sys.argv[1])).stage()
(folder / "model.bin").write_bytes(b"half a model")
print(folder, flush=True)
sys.stdin.read()
"""


def stage_in_another_process(root: Path) -> tuple[subprocess.Popen[str], Path]:
    process = subprocess.Popen(
        [sys.executable, "-c", STAGE_AND_WAIT, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


def test_only_the_staging_folders_of_dead_processes_are_removed(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    live, live_folder = stage_in_another_process(store.root)
    dead, dead_folder = stage_in_another_process(store.root)
    mine = store.stage()
    try:
        dead.kill()
        dead.wait(timeout=30)
        # a shoal from before owner records left these: a recent one may still be written, an old one is stale
        recent, old = store.staging / "recent", store.staging / "old"
        recent.mkdir()
        old.mkdir()
        past = time.time() - UNOWNED_STALE_SECONDS - 60
        os.utime(old, (past, past))
        # a record whose pid now belongs to another process (this one), started at another time: its owner is gone
        reused = store.staging / "reused"
        reused.mkdir()
        (store.root / OWNERS / "reused").write_text(json.dumps({**owner_of(mine), "started": 1.0}))

        assert sorted(store.clean_stale_staging()) == sorted([dead_folder, old, reused])
        assert {p.name for p in store.staging.iterdir()} == {live_folder.name, mine.name, "recent"}
        assert {p.name for p in (store.root / OWNERS).iterdir()} == {live_folder.name, mine.name}
        assert store.clean_stale_staging() == []  # nothing more to do

        live.kill()
        live.wait(timeout=30)
        assert store.clean_stale_staging() == [live_folder]
    finally:
        for process in (live, dead):
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    store.discard(mine)
    assert {p.name for p in store.staging.iterdir()} == {"recent"} and not any((store.root / OWNERS).iterdir())


def owner_of(staged: Path) -> dict[str, object]:
    return json.loads((staged.parents[1] / OWNERS / staged.name).read_text())


def test_a_commit_leaves_no_staging_folder_nor_owner_record(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    staged = store.stage()
    (staged / "model.bin").write_bytes(b"a model")
    uri, checksum, _, created = store.commit(staged, "models/m/family-1")
    assert created and store.verify(uri, checksum)
    assert not any(store.staging.iterdir()) and not any((store.root / OWNERS).iterdir())
    (store.path(uri) / "model.bin").write_bytes(b"a mode!")  # one byte flipped
    assert not store.verify(uri, checksum)


@pytest.mark.timeout(900)  # three `shoal train` processes, each a fresh interpreter: minutes on a loaded machine
def test_kill_9_of_shoal_train_kills_its_pool_workers_and_the_next_run_cleans_only_dead_staging(
    make_workspace, sms, tmp_path: Path
) -> None:
    """A `shoal train` with a 2-worker CV pool is killed with SIGKILL (its own process only: no group kill) while a
    staged artifact is on disk: its pool workers end with it. A concurrent `shoal train` started while it is paused
    keeps its staged folder; once it is dead, the next run removes that folder."""
    ws = make_workspace({"spam": spam_model(families=["majority", "tfidf-logreg"], cv_folds=2)}, n_jobs=2)
    ingest_file(ws, "spam", write_rows(tmp_path / "spam.csv", sms.head(300)))
    pause = tmp_path / "paused"
    command = [sys.executable, "-m", "shoal", "train", "spam", "-w", str(ws.root)]
    env = {**os.environ, PAUSE_AT_ENV: "artifact_written", PAUSE_FILE_ENV: str(pause)}
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert paused_pid(pause, 180, "artifact_written") == first.pid
        tree = process_tree(first.pid)
        workers = [p for p in tree[1:] if "loky" in " ".join(p.cmdline())]
        assert len(workers) >= 2, [p.cmdline() for p in tree]
        staged = sorted((ws.artifact_root / ".staging").iterdir())
        assert len(staged) == 2, staged  # every family's artifact is staged before the first one is registered

        # a second trainer runs to the end while the first one lives: the first one's folder stays
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=540)
        assert second.returncode == 0, second.stdout + second.stderr
        assert all(folder.is_dir() for folder in staged)
        assert sorted((ws.artifact_root / ".staging").iterdir()) == staged

        first.send_signal(signal.SIGKILL)  # the trainer alone, as the OOM killer or a user's kill -9 would
        first.wait(timeout=30)
        assert_gone(tree[1:], 30)  # its pool workers (and loky's helpers) did not outlive it
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)

    third = subprocess.run(command, capture_output=True, text=True, timeout=540)
    assert third.returncode == 0, third.stdout + third.stderr
    assert not any(folder.exists() for folder in staged) and not any((ws.artifact_root / ".staging").iterdir())
    assert not any((ws.artifact_root / OWNERS).iterdir())
    assert_store_consistent(ws, "spam")
