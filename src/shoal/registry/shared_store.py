"""An artifact store at an fsspec URL (an S3-compatible bucket, a network folder), shared by every node.

Writes keep the local store's rule, verify then register: an artifact is staged in this node's local folder,
hashed, uploaded under a temporary name (`.uploads/<time>-<id>/`), read back and checked against its checksum,
moved to its final name (`<key>-<checksum12>/`, file by file: each object is whole or absent) and only then made
visible by its manifest `<key>-<checksum12>.artifact.json` (the file names, checksum and size; one atomic write).
A reader never looks at a folder without its manifest, so an upload killed at any point leaves nothing visible;
its temporary objects are removed by a later `clean_stale_staging` once a day old.

Reads go through this node's cache (`<cache>/artifacts/<checksum>`): `open(uri, checksum)` downloads the manifest's
files into a private folder, hashes it and renames it into the cache only when the checksum matches, so a corrupt
or partial download is never used. A cached copy is hashed again on every `open` (as the local store hashes its
folder) and fetched again when it was damaged. Files written by `put_file` (data drops) have content-addressed,
immutable names and are cached by name (`<cache>/files/<name>`).

Credentials come only from the environment or fsspec's own configuration (for S3: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_S3 or FSSPEC_S3_* variables, ~/.aws); a URL holding any is refused, so none
is kept in the fleet file or shown in a message.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shoal.faults import checkpoint
from shoal.registry.artifacts import (
    SCHEME,
    UNOWNED_STALE_SECONDS,
    ArtifactError,
    ArtifactStore,
    Verified,
    files_checksum,
    folder_checksum,
    folder_files,
    full_disk_as_error,
    relative_of,
)

UPLOADS = ".uploads"
MANIFEST = ".artifact.json"
DOWNLOADS = ".downloads"
#: an upload folder older than this belongs to a process that died (no upload of one artifact takes a day)
UPLOAD_STALE_SECONDS = 86400.0
_STAMP = "%Y%m%dT%H%M%SZ"
#: fsspec protocols of object stores, which have no folders to create before writing
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"}


def _unsafe_name(folder: Path, names: Any) -> str | None:
    """Why a manifest's file list cannot be downloaded into `folder` (None: every name stays inside it): it is read
    from the bucket, so a name like `../../.bashrc` must never reach the file system."""
    if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
        return "its files are not a list of names"
    root = folder.resolve()
    for name in names:
        target = (folder / name).resolve()
        if "\\" in name or name.startswith("/") or ".." in Path(name).parts or not target.is_relative_to(root):
            return "a file name leaves the artifact's folder"
    return None


def is_url(location: str) -> bool:
    """Whether an artifact location is a URL (a shared store) rather than a folder."""
    return "://" in location


class SharedArtifactStore(Verified):
    """The artifact store at `url`, with `cache` as this node's folder for staging and verified copies."""

    def __init__(self, url: str, cache: Path) -> None:
        parts = urlsplit(url.split("::")[-1])  # a chained URL (simplecache::s3://...): the store's own part last
        if "@" in url or "?" in url or parts.username or parts.password:  # a query may hold a signature or a key
            raise ArtifactError(
                f"the artifact store URL {parts.scheme}://{parts.hostname}{parts.path} holds credentials or a query: "
                "take them out and give credentials through the environment (for S3: AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY) or fsspec's configuration"
            )
        try:
            import fsspec

            self.fs, base = fsspec.core.url_to_fs(url)
        except ImportError as error:  # fsspec names the package a protocol needs (s3fs for s3://)
            raise ArtifactError(f"the artifact store {url} cannot be opened: {error} (shoal[s3] for s3://)") from None
        except ValueError as error:
            raise ArtifactError(f"the artifact store {url} cannot be opened: {error}") from None
        self.url = url.rstrip("/")
        self.base = base.rstrip("/")
        self.local = ArtifactStore(cache)
        protocols = {self.fs.protocol} if isinstance(self.fs.protocol, str) else set(self.fs.protocol)
        self._folders = not protocols & _OBJECT_STORES

    # -- this node's folder: staging (the local store's, with its owner records) and the cache ----------------
    @property
    def root(self) -> Path:
        return self.local.root

    @property
    def staging(self) -> Path:
        return self.local.staging

    def stage(self) -> Path:
        return self.local.stage()

    def discard(self, staged: Path) -> None:
        self.local.discard(staged)

    def stale_staging(self) -> list[Path]:
        return self.local.stale_staging()

    def clean_stale_staging(self) -> list[Path]:
        """Remove this node's staging folders of dead processes (returned), its downloads left by a crash, and the
        store's uploads older than a day."""
        removed = self.local.clean_stale_staging()
        downloads = self.root / DOWNLOADS
        for folder in sorted(downloads.iterdir()) if downloads.is_dir() else []:
            with suppress(FileNotFoundError):
                if time.time() - folder.stat().st_mtime > UNOWNED_STALE_SECONDS:
                    shutil.rmtree(folder, ignore_errors=True)
        try:
            uploads = self.fs.ls(self._remote(UPLOADS), detail=False)
        except FileNotFoundError:
            uploads = []
        for upload in uploads:
            name = upload.rstrip("/").rsplit("/", 1)[-1]
            try:
                started = datetime.strptime(name.split("-", 1)[0], _STAMP).replace(tzinfo=UTC)
            except ValueError:
                continue  # not one of ours
            if (datetime.now(UTC) - started).total_seconds() > UPLOAD_STALE_SECONDS:
                with suppress(FileNotFoundError):
                    self.fs.rm(upload, recursive=True)
        return removed

    def _cached(self, checksum: str) -> Path:
        return self.root / "artifacts" / checksum

    def _private(self) -> Path:
        folder = self.root / DOWNLOADS / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return folder

    # -- the shared store ------------------------------------------------------------------------------------------
    def _remote(self, relative: str) -> str:
        return f"{self.base}/{relative}"

    def _exists(self, path: str) -> bool:
        self.fs.invalidate_cache(path)  # another node may have written it since this process listed its folder
        return bool(self.fs.exists(path))

    def _parent(self, path: str) -> None:
        if self._folders:
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)

    def _upload_folder(self) -> str:
        return self._remote(f"{UPLOADS}/{datetime.now(UTC).strftime(_STAMP)}-{uuid.uuid4().hex}")

    def _publish(self, upload: str, names: list[str], final: str) -> None:
        """Move verified uploaded files to their final names, one whole object at a time."""
        for name in names:
            self._parent(f"{final}/{name}")
            self.fs.mv(f"{upload}/{name}", f"{final}/{name}")

    def commit(self, staged: Path, key: str) -> tuple[str, str, int, bool]:
        """Upload a staged folder and make it visible once verified; return (uri, checksum, size in bytes, whether
        this call made it visible). The staged folder becomes this node's cached copy."""
        checksum, size = folder_checksum(staged)
        relative = f"{key}-{checksum[:12]}"
        created = not self._exists(self._remote(relative + MANIFEST))
        if created:
            names = folder_files(staged)
            upload = self._upload_folder()
            try:
                for number, name in enumerate(names):
                    if number == len(names) // 2:
                        checkpoint("artifact_uploading")
                    self._parent(f"{upload}/{name}")
                    self.fs.put_file(str(staged / name), f"{upload}/{name}")
                uploaded, _ = files_checksum(names, lambda name: self.fs.open(f"{upload}/{name}", "rb"))
                if uploaded != checksum:
                    raise ArtifactError(
                        f"the upload of artifact {relative} to {self.url} did not verify (checksum {uploaded[:12]} "
                        f"!= {checksum[:12]}); nothing was made visible. Retry the training"
                    )
                self._publish(upload, names, self._remote(relative))
                manifest = {"checksum": checksum, "size": size, "files": names}
                self.fs.pipe_file(f"{upload}/{MANIFEST}", json.dumps(manifest).encode())
                self.fs.mv(f"{upload}/{MANIFEST}", self._remote(relative + MANIFEST))  # now it is visible
            finally:
                with suppress(FileNotFoundError):
                    self.fs.rm(upload, recursive=True)
        self._keep(staged, checksum)
        return SCHEME + relative, checksum, size, created

    def _keep(self, staged: Path, checksum: str) -> None:
        """Make a staged folder (hashed just now) this node's cached copy, or drop it when one is there."""
        cached = self._cached(checksum)
        with suppress(OSError):  # a copy is there already (or the cache is elsewhere): the staged one goes
            cached.parent.mkdir(parents=True, exist_ok=True)
            if not cached.exists():
                os.replace(staged, cached)
        self.discard(staged)

    def put_file(self, data: bytes, relative: str) -> tuple[str, bool]:
        """Write one immutable file (content-addressed callers make `relative` unique) through a verified upload;
        return (uri, whether this call wrote it)."""
        final = self._remote(relative)
        if self._exists(final):
            return SCHEME + relative, False
        upload = f"{self._upload_folder()}/{relative.rsplit('/', 1)[-1]}"
        try:
            self._parent(upload)
            self.fs.pipe_file(upload, data)
            if self.fs.cat_file(upload) != data:
                raise ArtifactError(f"the upload of {relative} to {self.url} did not verify; nothing was stored")
            self._parent(final)
            self.fs.mv(upload, final)
        finally:
            with suppress(FileNotFoundError):
                self.fs.rm(upload.rsplit("/", 1)[0], recursive=True)
        return SCHEME + relative, True

    def file(self, uri: str) -> Path:
        """This node's copy of a file written by `put_file`, downloaded (whole, or not at all) when missing."""
        relative = relative_of(uri)
        cached = self.root / "files" / relative
        if cached.is_file():
            return cached
        with full_disk_as_error(self.root, f"a copy of {relative}"):
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_name(f".{cached.name}.{uuid.uuid4().hex}.tmp")
            try:
                self.fs.get_file(self._remote(relative), str(partial))
                os.replace(partial, cached)
            except FileNotFoundError:
                raise ArtifactError(f"file {uri} is missing from the artifact store {self.url}") from None
            finally:
                partial.unlink(missing_ok=True)
        return cached

    def remove(self, uri: str) -> None:
        """Take back an artifact (its manifest first: it is invisible from then on) or a file no row refers to."""
        relative = relative_of(uri)
        for path in (self._remote(relative + MANIFEST), self._remote(relative)):
            with suppress(FileNotFoundError):
                self.fs.rm(path, recursive=True)

    def problem(self, uri: str, checksum: str) -> str | None:
        """Why the artifact cannot be trusted (missing, incomplete or changed since it was registered), or None
        when this node's copy verifies, after fetching one when there was none."""
        cached = self._cached(checksum)
        if cached.is_dir():
            if folder_checksum(cached)[0] == checksum:
                return None
            shutil.rmtree(cached, ignore_errors=True)  # this node's copy was damaged: fetch it again
        return self._download(uri, checksum)

    def _download(self, uri: str, checksum: str) -> str | None:
        relative = relative_of(uri)
        try:
            manifest: dict[str, Any] = json.loads(self.fs.cat_file(self._remote(relative + MANIFEST)))
        except FileNotFoundError:
            return f"artifact {uri} is missing from the artifact store {self.url}"
        with full_disk_as_error(self.root, f"a copy of artifact {relative}"):
            private = self._private()
            try:
                names = manifest.get("files") if isinstance(manifest, dict) else None
                unsafe = _unsafe_name(private, names)
                if unsafe is not None:
                    return f"artifact {uri} in the artifact store {self.url} has a malformed manifest ({unsafe})"
                for name in names:  # type: ignore[union-attr]
                    (private / name).parent.mkdir(parents=True, exist_ok=True)
                    try:
                        self.fs.get_file(self._remote(f"{relative}/{name}"), str(private / name))
                    except FileNotFoundError:
                        return f"artifact {uri} in the artifact store {self.url} is incomplete: {name} is missing"
                actual, _ = folder_checksum(private)
                if actual != checksum:
                    return (
                        f"artifact {uri} in the artifact store {self.url} was changed after it was registered "
                        f"(checksum {actual[:12]} != {checksum[:12]})"
                    )
                cached = self._cached(checksum)
                cached.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.rename(private, cached)
                except OSError:  # another process of this node cached it first
                    if not cached.is_dir():
                        raise
            finally:
                shutil.rmtree(private, ignore_errors=True)
        return None

    def _verified(self, uri: str, checksum: str) -> Path:
        return self._cached(checksum)

    def folder(self, uri: str, checksum: str) -> Path:
        """The local folder of an artifact already verified by `open` (its cached copy)."""
        cached = self._cached(checksum)
        return cached if cached.is_dir() else self.open(uri, checksum)


#: the store of a workspace: a folder (the default) or a URL
Store = ArtifactStore | SharedArtifactStore


def open_store(location: str, root: Path, cache: Path) -> Store:
    """The artifact store at `location`: a URL opens a shared store (with `cache` as this node's folder); a folder,
    relative to the workspace `root` or absolute, the local store exactly as before."""
    if is_url(location):
        return SharedArtifactStore(location, cache if cache.is_absolute() else root / cache)
    folder = Path(location)
    return ArtifactStore(folder if folder.is_absolute() else root / folder)
