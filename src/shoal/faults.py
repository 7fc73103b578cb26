"""Named fault points for tests: stop a process at an exact point so a test can kill it there.

With SHOAL_TEST_PAUSE_AT set to a point's name, the first process to reach that point creates the file named by
SHOAL_TEST_PAUSE_FILE (holding its pid) and waits there (at most PAUSE_SECONDS); a test waits for the file and
kills the process. Later arrivals find the file and go on, so the run after the kill completes. With
SHOAL_TEST_FORK_LOG set, every `os.fork` of a process that called `log_forks()` appends its pid to that file.

The points, in the order the loop reaches them:
- `drop_written`: a drop's file is in the store, its row not yet (`Registry.add_drop`);
- `search`: a family's cross-validated search starts (`train.search`);
- `artifact_written`: a candidate's artifact is complete in `.staging`, not committed (`train.trainer`);
- `artifact_uploading`: half of an artifact's files are uploaded to a shared store, under a temporary name
  (`SharedArtifactStore.commit`);
- `artifact_committed`: the artifact is in its final folder, its version row not yet (`Registry.register_version`);
- `registered`: the version row is committed (`train.trainer`);
- `gate`: every candidate is registered, the gate starts (`gate.run`);
- `promote`: an alias change is written inside its transaction, not yet committed (`Registry.set_alias`);
- `load` / `swap`: a server loaded and warmed a model's first / next production version and has not switched to
  it yet (`serve.pool`).
"""

from __future__ import annotations

import os
import time

PAUSE_AT_ENV = "SHOAL_TEST_PAUSE_AT"
PAUSE_FILE_ENV = "SHOAL_TEST_PAUSE_FILE"
FORK_LOG_ENV = "SHOAL_TEST_FORK_LOG"
PAUSE_SECONDS = 600.0


def checkpoint(name: str) -> None:
    """Pause here if a test asked to (see the module's doc); otherwise do nothing."""
    if os.environ.get(PAUSE_AT_ENV) != name:
        return
    path = os.environ[PAUSE_FILE_ENV]
    written = f"{path}.{os.getpid()}.tmp"
    _append(written, str(os.getpid()))
    try:
        os.link(written, path)  # atomic, and refused when the file exists: a reader never sees it half-written
    except FileExistsError:  # another process paused here already
        return
    finally:
        os.unlink(written)
    time.sleep(PAUSE_SECONDS)


def log_forks() -> None:
    """Record every later `os.fork` of this process in SHOAL_TEST_FORK_LOG, when set."""
    path = os.environ.get(FORK_LOG_ENV)
    if path:
        os.register_at_fork(before=lambda: _append(path, f"{os.getpid()}\n"))


def _append(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
