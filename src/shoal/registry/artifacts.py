"""The artifact store: folders addressed by URI, written atomically and verified by checksum on read.

URIs look like `local:models/<model>/<key>` and resolve against the artifact root, so a workspace can be
moved. A folder becomes visible under its final name only after every file is written and hashed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

SCHEME = "local:"
STAGING = ".staging"


class ArtifactError(RuntimeError):
    """An artifact is missing or does not match its recorded checksum."""


def folder_checksum(folder: Path) -> tuple[str, int]:
    """sha256 over every file's relative path and bytes, in sorted order; and the total size."""
    digest = hashlib.sha256()
    size = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
    return digest.hexdigest(), size


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())


def staging_owner(folder: Path) -> int | None:
    """The pid that made a staging folder (None for a name without one)."""
    pid, _, rest = folder.name.partition("-")
    return int(pid) if pid.isdigit() and rest else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def stage(self) -> Path:
        """A fresh private folder to write an artifact into before `commit`, named after this process."""
        folder = self.root / STAGING / f"{os.getpid()}-{uuid.uuid4().hex}"
        folder.mkdir(parents=True)
        return folder

    # Minimal version (faults branch) of the staging cleanup the artifacts branch brings; merge the two.
    def stale_staging(self) -> list[Path]:
        """The staging folders whose process no longer runs (a killed `shoal train`); a reused pid keeps its
        folder, which errs on the safe side."""
        staging = self.root / STAGING
        folders = sorted(staging.iterdir()) if staging.is_dir() else []
        return [f for f in folders if (pid := staging_owner(f)) is not None and not _alive(pid)]

    def clean_stale_staging(self) -> list[Path]:
        """Remove the staging folders of dead processes (never one a running process writes into)."""
        stale = self.stale_staging()
        for folder in stale:
            shutil.rmtree(folder, ignore_errors=True)
        return stale

    def commit(self, staged: Path, key: str) -> tuple[str, str, int]:
        """Move a staged folder to its final place; return (uri, checksum, size in bytes)."""
        checksum, size = folder_checksum(staged)
        _fsync_tree(staged)
        relative = f"{key}-{checksum[:12]}"
        final = self.root / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            shutil.rmtree(staged)
        else:
            os.replace(staged, final)
        return SCHEME + relative, checksum, size

    def put_file(self, data: bytes, relative: str) -> str:
        """Write one immutable file atomically (content-addressed callers make `relative` unique)."""
        final = self.root / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        if not final.exists():
            temporary = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
            with temporary.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, final)
        return SCHEME + relative

    def path(self, uri: str) -> Path:
        if not uri.startswith(SCHEME):
            raise ArtifactError(f"unsupported artifact URI {uri!r} (expected {SCHEME}...)")
        return self.root / uri.removeprefix(SCHEME)

    def open(self, uri: str, checksum: str) -> Path:
        """The folder behind `uri`, after checking it still matches `checksum`."""
        folder = self.path(uri)
        if not folder.is_dir():
            raise ArtifactError(f"artifact {uri} is missing at {folder}")
        actual, _ = folder_checksum(folder)
        if actual != checksum:
            raise ArtifactError(
                f"artifact {uri} was changed after it was registered (checksum {actual[:12]} != "
                f"{checksum[:12]}); refusing to load it. Retrain or restore the folder."
            )
        return folder
