"""The artifact store: folders addressed by URI, written atomically and verified by checksum on read.

URIs look like `local:models/<model>/<key>` and resolve against the artifact root, so a workspace can be
moved. A folder becomes visible under its final name only after every file is written and hashed.

A staged folder `.staging/<id>` has an owner record `.staging-owners/<id>` (host, pid and the process's start
time, written before the folder), so `clean_stale_staging` removes exactly the folders of processes that
died (kill -9, power loss) and never a live trainer's. A write that fails because the disk is full raises
`StoreFull` naming the disk, after removing what it had half-written.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

import psutil

SCHEME = "local:"
STAGING = ".staging"
OWNERS = ".staging-owners"
#: a staging folder without an owner record (left by a shoal before owner records) is stale after this long
UNOWNED_STALE_SECONDS = 3600.0
_FULL = {errno.ENOSPC, errno.EDQUOT}


class ArtifactError(RuntimeError):
    """An artifact is missing or does not match its recorded checksum, or the store cannot be written.

    `problem` is what is wrong without the advice of the message (for callers that give their own)."""

    def __init__(self, message: str, problem: str | None = None) -> None:
        super().__init__(message)
        self.problem = problem or message


class StoreFull(ArtifactError):
    """A write to the store (artifacts, drops or the registry database) failed: its disk is full."""


def free_bytes(path: Path) -> int:
    """Free bytes on the disk that holds `path` (or would hold it: its nearest existing folder)."""
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    return shutil.disk_usage(existing).free


def store_full(path: Path, what: str) -> StoreFull:
    """The one-line error for a full disk under `path` while writing `what`."""
    free = free_bytes(path)
    return StoreFull(
        f"no space left on the disk holding {path} ({free / 1e6:.1f} MB free) while writing {what}; nothing was "
        f"stored. Free space on that disk (or move the workspace's artifacts/registry to a bigger one) and retry"
    )


@contextmanager
def full_disk_as_error(path: Path, what: str) -> Iterator[None]:
    """Turn a full disk (ENOSPC, EDQUOT) inside the block into `StoreFull`; other errors pass unchanged."""
    try:
        yield
    except OSError as error:
        if error.errno in _FULL:
            raise store_full(path, what) from None
        raise


def folder_files(folder: Path) -> list[str]:
    """The relative (POSIX) names of every file under `folder`, in the order `folder_checksum` hashes them."""
    return [p.relative_to(folder).as_posix() for p in sorted(p for p in folder.rglob("*") if p.is_file())]


def files_checksum(names: list[str], opener: Callable[[str], BinaryIO]) -> tuple[str, int]:
    """sha256 over each file's name and bytes, in the order given (`folder_files`'), read through `opener`; and
    the total size. One definition for a local folder and a folder in a shared store."""
    digest = hashlib.sha256()
    size = 0
    for name in names:
        digest.update(name.encode() + b"\0")
        with opener(name) as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
    return digest.hexdigest(), size


def folder_checksum(folder: Path) -> tuple[str, int]:
    """sha256 over every file's relative path and bytes, in sorted order; and the total size."""
    return files_checksum(folder_files(folder), lambda name: (folder / name).open("rb"))


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())


def _write_atomic(final: Path, data: bytes) -> None:
    """Write `final` through a temporary file in its folder; the temporary never outlives a failure."""
    temporary = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)


def _owner() -> dict[str, object]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()}


def _owner_alive(record: Path, folder: Path) -> bool:
    """Whether the process that staged `folder` may still be using it (unknown hosts count as alive)."""
    try:
        owner = json.loads(record.read_text(encoding="utf-8"))
    except FileNotFoundError:  # no record: a shoal before owner records; give it time
        with suppress(FileNotFoundError):
            return time.time() - folder.stat().st_mtime < UNOWNED_STALE_SECONDS
        return False
    except ValueError:  # records are written whole (rename): only a damaged disk makes one unreadable
        return False
    if owner.get("host") != socket.gethostname():
        return True
    try:
        return abs(psutil.Process(int(owner["pid"])).create_time() - float(owner["started"])) < 0.01
    except psutil.NoSuchProcess:  # gone, or a zombie
        return False
    except psutil.Error:  # cannot tell: keep it
        return True


def relative_of(uri: str) -> str:
    """The store-relative name behind an artifact URI (`local:` names resolve against whatever store the workspace
    has, a folder or a URL, so a store can move)."""
    if not uri.startswith(SCHEME):
        raise ArtifactError(f"unsupported artifact URI {uri!r} (expected {SCHEME}...)")
    relative = uri.removeprefix(SCHEME)
    if not relative or relative.startswith("/") or ".." in relative.split("/"):
        raise ArtifactError(f"artifact URI {uri!r} does not name a place inside the store")
    return relative


class Verified:
    """What every artifact store answers from its `problem(uri, checksum)`: `verify` and `open`."""

    def problem(self, uri: str, checksum: str) -> str | None:
        raise NotImplementedError

    def _verified(self, uri: str, checksum: str) -> Path:
        """The local folder of an artifact `problem` found nothing wrong with."""
        raise NotImplementedError

    def verify(self, uri: str, checksum: str) -> bool:
        """Whether the artifact behind `uri` is present and matches `checksum`."""
        return self.problem(uri, checksum) is None

    def open(self, uri: str, checksum: str) -> Path:
        """A local folder of the artifact behind `uri`, after checking it still matches `checksum`."""
        problem = self.problem(uri, checksum)
        if problem is not None:
            raise ArtifactError(
                f"{problem}; refusing to load it. Run 'shoal doctor' to check the store, and promote a version "
                "that verifies (or restore the artifact from a backup)",
                problem,
            )
        return self._verified(uri, checksum)


class ArtifactStore(Verified):
    """An artifact store in a local (or mounted) folder: the default."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def staging(self) -> Path:
        return self.root / STAGING

    def _owner_record(self, staged: Path) -> Path:
        return self.root / OWNERS / staged.name

    def stage(self) -> Path:
        """A fresh private folder to write an artifact into before `commit` (or `discard`)."""
        folder = self.staging / uuid.uuid4().hex
        record = self._owner_record(folder)
        with full_disk_as_error(self.root, "a staging folder"):
            try:
                folder.parent.mkdir(parents=True, exist_ok=True)
                record.parent.mkdir(parents=True, exist_ok=True)
                _write_atomic(record, json.dumps(_owner()).encode())  # before the folder: never an ownerless one
                folder.mkdir()
            except BaseException:
                record.unlink(missing_ok=True)
                raise
        return folder

    def discard(self, staged: Path) -> None:
        """Remove a staged folder that will not be committed, and its owner record."""
        shutil.rmtree(staged, ignore_errors=True)
        self._owner_record(staged).unlink(missing_ok=True)

    def stale_staging(self) -> list[Path]:
        """The staging folders whose process is gone (what `clean_stale_staging` would remove)."""
        folders = sorted(self.staging.iterdir()) if self.staging.is_dir() else []
        return [f for f in folders if f.is_dir() and not _owner_alive(self._owner_record(f), f)]

    def clean_stale_staging(self) -> list[Path]:
        """Remove the staging folders (and owner records) of processes that are gone; return the folders removed.

        A folder whose owner runs (on this host, same pid and start time) or runs on another host is kept."""
        removed = self.stale_staging()
        for folder in removed:
            self.discard(folder)
        owners = self.root / OWNERS
        for record in sorted(owners.iterdir()) if owners.is_dir() else []:  # a crash between folder and record
            if record.name.startswith("."):  # a record being written (or left half-written long ago)
                with suppress(FileNotFoundError):
                    if time.time() - record.stat().st_mtime > UNOWNED_STALE_SECONDS:
                        record.unlink()
                continue
            folder = self.staging / record.name
            if not folder.exists() and not _owner_alive(record, folder):
                record.unlink(missing_ok=True)
        return removed

    def commit(self, staged: Path, key: str) -> tuple[str, str, int, bool]:
        """Move a staged folder to its final place; return (uri, checksum, size in bytes, whether this call
        created the final folder)."""
        checksum, size = folder_checksum(staged)
        relative = f"{key}-{checksum[:12]}"
        final = self.root / relative
        with full_disk_as_error(self.root, f"artifact {relative}"):
            _fsync_tree(staged)
            final.parent.mkdir(parents=True, exist_ok=True)
            created = not final.exists()
            if created:
                os.replace(staged, final)
        self.discard(staged)
        return SCHEME + relative, checksum, size, created

    def put_file(self, data: bytes, relative: str) -> tuple[str, bool]:
        """Write one immutable file atomically (content-addressed callers make `relative` unique); return
        (uri, whether this call wrote it)."""
        final = self.root / relative
        if final.exists():
            return SCHEME + relative, False
        with full_disk_as_error(final.parent, relative):
            final.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(final, data)
        return SCHEME + relative, True

    def path(self, uri: str) -> Path:
        return self.root / relative_of(uri)

    def file(self, uri: str) -> Path:
        """The local path of a file written by `put_file` (here: where it lies in the store)."""
        return self.path(uri)

    def folder(self, uri: str, checksum: str) -> Path:
        """The local folder of an artifact already verified by `open` (here: where it lies in the store)."""
        return self.path(uri)

    def remove(self, uri: str) -> None:
        """Take back an artifact folder or file that no row refers to."""
        path = self.path(uri)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def problem(self, uri: str, checksum: str) -> str | None:
        """Why the artifact behind `uri` cannot be trusted (missing, or changed since it was registered), or
        None when it verifies."""
        folder = self.path(uri)
        if not folder.is_dir():
            return f"artifact {uri} is missing from the artifact store"
        actual, _ = folder_checksum(folder)
        if actual != checksum:
            return f"artifact {uri} was changed after it was registered (checksum {actual[:12]} != {checksum[:12]})"
        return None

    def _verified(self, uri: str, checksum: str) -> Path:
        return self.path(uri)
