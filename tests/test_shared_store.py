"""The artifact store at a URL, shared by every node: a real spam model trained into an S3 bucket and served by a
second workspace (another node: its own folder and empty cache) on the same registry; a corrupt object refused
while the server keeps its model; an upload killed halfway leaves nothing visible; the cache is reused.

The bucket is moto's S3 server (`moto_server`, an emulator of the S3 HTTP API) in its own process on 127.0.0.1,
reached by s3fs over HTTP as any S3-compatible service would be; the credentials are moto's dummy ones, given
through the environment only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import read_csv, spam_model
from processes import free_port, kill_when_paused, start_group
from serve_fixtures import running, wait_until
from shoal.data.ingest import ingest_file
from shoal.doctor import examine
from shoal.registry import PRODUCTION, ArtifactError, ArtifactStore
from shoal.registry.shared_store import MANIFEST, UPLOADS, SharedArtifactStore
from shoal.train.trainer import train_models
from shoal.workspace import ARTIFACT_CACHE_ENV, ARTIFACTS_ENV, Workspace

s3fs = pytest.importorskip("s3fs", reason="s3fs is not installed (pip install 'shoal[s3]')")
boto3 = pytest.importorskip("boto3", reason="moto[server] is not installed (the dev extra)")

ROWS = 200
BODY = {"inputs": ["Free entry in 2 a weekly competition to win FA Cup final tickets"]}
MOTO = Path(sys.executable).with_name("moto_server")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server in its own process (and session) on a free port; stopped after the module."""
    if not MOTO.exists():
        pytest.fail(f"{MOTO} is missing: pip install 'moto[server]' (the dev extra)")
    port = free_port()
    process = subprocess.Popen(
        [str(MOTO), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"moto_server exited with {process.returncode}"
            try:
                httpx.get(url, timeout=5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "moto_server did not answer within 120 s"
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh bucket; the environment points boto and s3fs (in this process and its children) at the emulator."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    name = f"shoal-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    s3fs.S3FileSystem.clear_instance_cache()  # a file system made for an earlier endpoint must not be reused
    yield name
    s3fs.S3FileSystem.clear_instance_cache()


def objects(bucket: str) -> dict[str, bytes]:
    """Every object in the bucket, by key."""
    client = boto3.client("s3")
    found = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in found}


def node(make_workspace: Callable[..., Workspace], bucket: str, registry: str) -> Workspace:
    """A workspace in a folder of its own (its node's cache inside it) on the shared registry and bucket."""
    return make_workspace(
        {"spam": spam_model(cv_folds=2)},
        registry=registry,
        artifacts=f"s3://{bucket}/store",
        n_jobs=1,
        server={"poll_interval_s": 0.2},
    )


def train_into(ws: Workspace, data: Path) -> None:
    read_csv("sms_spam/sms_spam.csv").iloc[:ROWS].to_csv(data, index=False)
    ingest_file(ws, "spam", data)
    [report] = train_models(ws, ["spam"])
    assert report.error is None, report.error


def cached(ws: Workspace) -> list[str]:
    folder = ws.artifact_root / "artifacts"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_a_model_trained_into_a_bucket_is_served_by_another_node_with_an_empty_cache(
    make_workspace: Callable[..., Workspace], bucket: str, registry_url: str, tmp_path: Path
) -> None:
    trainer = node(make_workspace, bucket, registry_url)
    train_into(trainer, tmp_path / "spam.csv")
    versions = trainer.registry.versions("spam")
    production = trainer.registry.alias("spam", PRODUCTION)
    assert len(versions) == 2 and production is not None
    stored = objects(bucket)
    for version in versions:  # visible: its manifest names exactly the files in its folder
        relative = version.artifact_uri.removeprefix("local:")
        manifest = json.loads(stored[f"store/{relative}{MANIFEST}"])
        assert manifest["checksum"] == version.checksum and manifest["size"] == version.size_bytes
        assert sorted(manifest["files"]) == sorted(
            k.removeprefix(f"store/{relative}/") for k in stored if k.startswith(f"store/{relative}/")
        )
    assert not [k for k in stored if k.startswith(f"store/{UPLOADS}/")]  # no temporary object left
    assert any(k.startswith("store/data/spam/") for k in stored)  # the drop is shared too
    assert not (trainer.root / ".shoal" / "artifacts").exists()  # nothing in the local default folder
    assert cached(trainer) == sorted(v.checksum for v in versions)  # the trainer's staged folders became its cache

    server = node(make_workspace, bucket, registry_url)
    assert server.artifact_root != trainer.artifact_root and cached(server) == []
    with running(server) as url:
        answer = httpx.post(f"{url}/v1/models/spam/predict", json=BODY, timeout=30)
        assert answer.status_code == 200 and answer.json()["version"] == production
    assert cached(server) == [trainer.registry.version("spam", production).checksum]
    assert not any((server.artifact_root / ".downloads").iterdir())
    diagnosis = examine(server)  # the doctor verifies every version and drop through this node's cache
    assert diagnosis.healthy, diagnosis.as_dict()
    assert cached(server) == sorted(v.checksum for v in versions)
    [orphans] = [c for c in diagnosis.checks if c.name == "unreferenced files"]
    assert orphans.notes == [f"not checked in the shared store s3://{bucket}/store (only in a local one)"]


def test_a_corrupt_object_in_the_bucket_is_refused_and_the_server_keeps_its_model(
    make_workspace: Callable[..., Workspace], bucket: str, tmp_path: Path
) -> None:
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    trainer = node(make_workspace, bucket, registry)
    train_into(trainer, tmp_path / "spam.csv")
    production = trainer.registry.alias("spam", PRODUCTION)
    other = next(v for v in trainer.registry.versions("spam") if v.number != production)
    server = node(make_workspace, bucket, registry)
    with running(server) as url:
        # a byte of the other version's largest object flips in the bucket, after the trainer cached it
        prefix = f"store/{other.artifact_uri.removeprefix('local:')}/"
        key, data = max(((k, v) for k, v in objects(bucket).items() if k.startswith(prefix)), key=lambda kv: len(kv[1]))
        damaged = bytearray(data)
        damaged[len(damaged) // 2] ^= 0xFF
        boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=bytes(damaged))
        # the trainer's node still holds a verified copy, so it may promote; the server's download does not verify
        trainer.registry.set_alias("spam", other.number, actor="test", reason="promote the damaged version")
        wait_until(lambda: httpx.get(f"{url}/readyz").json().get("problems"), "no problem reported", timeout=60)
        problem = httpx.get(f"{url}/readyz").json()["problems"]["spam"]
        where = f"artifact {other.artifact_uri} in the artifact store s3://{bucket}/store"
        assert f"could not load v{other.number}: ArtifactError: {where} was changed after it was registered" in problem
        assert f"still serving v{production}" in problem and "testing" not in problem  # no credentials shown
        answer = httpx.post(f"{url}/v1/models/spam/predict", json=BODY, timeout=30)
        assert answer.status_code == 200 and answer.json()["version"] == production
    assert other.checksum not in cached(server)  # the corrupt download was never kept
    assert not any((server.artifact_root / ".downloads").iterdir())
    with pytest.raises(ArtifactError, match="was changed after it was registered"):
        server.registry.artifacts.open(other.artifact_uri, other.checksum)


def test_an_upload_killed_halfway_leaves_no_visible_artifact(
    make_workspace: Callable[..., Workspace], bucket: str, tmp_path: Path
) -> None:
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    trainer = node(make_workspace, bucket, registry)
    data = tmp_path / "spam.csv"
    read_csv("sms_spam/sms_spam.csv").iloc[:ROWS].to_csv(data, index=False)
    ingest_file(trainer, "spam", data)
    command = [sys.executable, "-m", "shoal", "train", "spam", "-w", str(trainer.root)]
    process = start_group(command, tmp_path / "train.log", "artifact_uploading", tmp_path / "paused")
    kill_when_paused(process, "artifact_uploading", tmp_path / "paused", 300)
    stored = objects(bucket)
    assert [k for k in stored if k.startswith(f"store/{UPLOADS}/")]  # killed with part of an upload written
    assert not [k for k in stored if k.startswith("store/models/")]  # nothing under a final name
    assert trainer.registry.versions("spam") == []
    # the next training makes every artifact visible, and uses no part of the killed upload
    [report] = train_models(trainer, ["spam"])
    assert report.error is None, report.error
    stored = objects(bucket)
    manifests = [k for k in stored if k.endswith(MANIFEST)]
    assert len(manifests) == len(trainer.registry.versions("spam")) == 2
    reader = node(make_workspace, bucket, registry)
    for version in reader.registry.versions("spam"):
        reader.load_predictor(version)


def test_the_cache_is_reused_without_a_second_download(
    make_workspace: Callable[..., Workspace], bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    trainer = node(make_workspace, bucket, registry)
    train_into(trainer, tmp_path / "spam.csv")
    version = trainer.registry.version("spam", trainer.registry.alias("spam", PRODUCTION) or 0)
    downloads: list[str] = []
    fetch = s3fs.S3FileSystem._get_file  # what every download of s3fs awaits (its sync methods wrap it)

    async def counted(self: Any, remote: str, local: str, *args: Any, **kwargs: Any) -> Any:
        downloads.append(remote)
        return await fetch(self, remote, local, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_get_file", counted)
    s3fs.S3FileSystem.clear_instance_cache()  # a file system binds its sync methods when it is made
    reader = node(make_workspace, bucket, registry)
    first = reader.registry.artifacts.open(version.artifact_uri, version.checksum)
    assert downloads and first.parent.name == "artifacts" and first.name == version.checksum
    modified = {p: p.stat().st_mtime_ns for p in first.rglob("*")}
    downloads.clear()
    store = SharedArtifactStore(f"s3://{bucket}/store", reader.artifact_root)  # as a new process would
    assert store.open(version.artifact_uri, version.checksum) == first
    reader.load_predictor(version)
    assert downloads == [] and {p: p.stat().st_mtime_ns for p in first.rglob("*")} == modified
    # a copy damaged on this node is fetched again (and verified), never used
    largest = max((p for p in first.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    largest.write_bytes(largest.read_bytes()[:10])
    assert store.open(version.artifact_uri, version.checksum) == first and downloads


def test_a_folder_url_is_a_shared_store_and_a_url_with_credentials_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    store = SharedArtifactStore(f"file://{shared}", tmp_path / "node-a")
    staged = store.stage()
    (staged / "weights.bin").write_bytes(b"w" * 100)
    (staged / "sub").mkdir()
    (staged / "sub" / "meta.json").write_text("{}")
    uri, checksum, size, created = store.commit(staged, "models/m/fam-abc")
    assert created and size == 102 and (shared / f"{uri.removeprefix('local:')}{MANIFEST}").is_file()
    assert not any((shared / UPLOADS).iterdir()) and not staged.exists()
    other = SharedArtifactStore(f"file://{shared}", tmp_path / "node-b")
    assert (other.open(uri, checksum) / "sub" / "meta.json").read_text() == "{}"
    (shared / uri.removeprefix("local:") / "weights.bin").write_bytes(b"x" * 100)
    third = SharedArtifactStore(f"file://{shared}", tmp_path / "node-c")
    with pytest.raises(ArtifactError, match="was changed after it was registered"):
        third.open(uri, checksum)
    assert not (tmp_path / "node-c" / "artifacts").exists()
    for url in (
        "s3://AKIAXXXX:s3cr3t@bucket/prefix",
        "s3://bucket/prefix?secret=s3cr3t",
        "simplecache::s3://AKIAXXXX:s3cr3t@bucket/prefix",  # a chained URL: the credentials sit in its last part
    ):
        with pytest.raises(ArtifactError, match="holds credentials") as refused:
            SharedArtifactStore(url, tmp_path / "node-d")
        assert "s3cr3t" not in str(refused.value) and "AKIAXXXX" not in str(refused.value)


@pytest.mark.parametrize("name", ["../../escaped.txt", "/tmp/escaped.txt", "sub/../../escaped.txt"])
def test_a_manifest_naming_a_file_outside_the_artifact_is_refused_before_any_download(
    tmp_path: Path, name: str
) -> None:
    """The manifest is read from the bucket: whoever can write there must not write files anywhere on a node."""
    shared = tmp_path / "shared"
    store = SharedArtifactStore(f"file://{shared}", tmp_path / "node-a")
    staged = store.stage()
    (staged / "weights.bin").write_bytes(b"w" * 10)
    uri, checksum, _, _ = store.commit(staged, "models/m/fam-abc")
    (shared / "escaped.txt").write_text("planted")  # what a traversing name would fetch from the bucket
    manifest = shared / f"{uri.removeprefix('local:')}{MANIFEST}"
    record = json.loads(manifest.read_text())
    record["files"] = [*record["files"], name]
    manifest.write_text(json.dumps(record))
    node = tmp_path / "node-b" / "cache"
    with pytest.raises(ArtifactError, match="malformed manifest"):
        SharedArtifactStore(f"file://{shared}", node).open(uri, checksum)
    assert not (tmp_path / "node-b" / "escaped.txt").exists() and not Path("/tmp/escaped.txt").exists()
    assert not list(tmp_path.glob("node-b/**/escaped.txt"))


def test_the_store_comes_from_the_fleet_file_or_the_environment_and_a_folder_stays_local(
    make_workspace: Callable[..., Workspace], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = make_workspace({"spam": spam_model()})
    store = ws.artifact_store()
    assert type(store) is ArtifactStore and store.root == ws.root / ".shoal" / "artifacts"
    monkeypatch.setenv(ARTIFACTS_ENV, f"file://{tmp_path / 'shared'}")
    shared = ws.artifact_store()
    assert isinstance(shared, SharedArtifactStore) and shared.url == f"file://{tmp_path / 'shared'}"
    assert shared.root == ws.root / ".shoal" / "artifact-cache" == ws.artifact_root
    monkeypatch.setenv(ARTIFACT_CACHE_ENV, str(tmp_path / "node-cache"))
    assert ws.artifact_store().root == tmp_path / "node-cache"
    other = make_workspace({"spam": spam_model()}, artifacts=f"file://{tmp_path / 'fleet-file'}", artifact_cache="c")
    monkeypatch.delenv(ARTIFACTS_ENV)
    monkeypatch.delenv(ARTIFACT_CACHE_ENV)
    chosen = other.artifact_store()
    assert isinstance(chosen, SharedArtifactStore) and chosen.root == other.root / "c"
