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


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def stage(self) -> Path:
        """A fresh private folder to write an artifact into before `commit`."""
        folder = self.root / ".staging" / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return folder

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
