"""The registry on SQLite and PostgreSQL: versions, dedupe, aliases with history, rollback, events,
artifact verification, and concurrent writers from several processes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from metrics_fixture import metrics_of
from shoal.registry import ArtifactError, Registry, RegistryError


def stage(registry: Registry, content: bytes) -> Path:
    folder = registry.artifacts.stage()
    (folder / "weights.bin").write_bytes(content)
    return folder


def register(registry: Registry, family: str, params: dict, dataset: str = "d1", content: bytes = b"w"):
    return registry.register_version(
        "m",
        family=family,
        params=params,
        dataset_version=dataset,
        code_version="test",
        metrics=metrics_of("accuracy", {"accuracy": 0.5}),
        staged=stage(registry, content),
        test_hash="t",
        label_error_rate=0.01,
    )


@pytest.fixture
def registry(registry_url: str, tmp_path: Path):
    reg = Registry(registry_url, tmp_path / "artifacts")
    reg.ensure_model("m", "text-classification")
    yield reg
    reg.close()


def test_versions_are_numbered_deduplicated_and_verified(registry: Registry) -> None:
    v1, created1 = register(registry, "a", {"C": 1})
    v2, created2 = register(registry, "a", {"C": 2}, content=b"other")
    again, created3 = register(registry, "a", {"C": 1}, content=b"different bytes, same recipe")
    assert (v1.number, v2.number, created1, created2) == (1, 2, True, True)
    assert again.number == 1 and not created3
    assert [v.number for v in registry.versions("m")] == [1, 2]
    assert registry.artifacts.open(v1.artifact_uri, v1.checksum).joinpath("weights.bin").read_bytes() == b"w"
    (registry.artifacts.path(v1.artifact_uri) / "weights.bin").write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="changed after it was registered"):
        registry.artifacts.open(v1.artifact_uri, v1.checksum)
    assert [e.kind for e in registry.events("m")] == ["trained", "trained"]


def test_aliases_keep_history_and_rollback_undoes_promotions(registry: Registry) -> None:
    numbers = [register(registry, "a", {"C": c}, content=bytes([c]))[0].number for c in (1, 2, 3)]
    registry.set_alias("m", numbers[0], actor="gate", reason="first")
    with pytest.raises(RegistryError, match="no earlier production version"):
        registry.rollback("m")
    registry.set_alias("m", numbers[1], actor="gate", reason="better")
    registry.set_alias("m", numbers[2], actor="manual", reason="by hand")
    assert registry.alias("m") == 3 and registry.production_versions() == {"m": 3}
    assert registry.rollback("m") == 2
    assert registry.rollback("m") == 1
    history = registry.alias_history("m")
    assert [(h.from_version, h.to_version, h.actor) for h in history] == [
        (None, 1, "gate"),
        (1, 2, "gate"),
        (2, 3, "manual"),
        (3, 2, "rollback"),
        (2, 1, "rollback"),
    ]
    kinds = [e.kind for e in registry.events("m")]
    assert kinds[-5:] == ["promoted", "promoted", "promoted", "rolled_back", "rolled_back"]
    with pytest.raises(RegistryError, match="has no version 9"):
        registry.set_alias("m", 9, actor="manual", reason="x")


def test_pipeline_scores_are_written_with_the_alias_change_or_not_at_all(registry: Registry) -> None:
    numbers = [register(registry, "a", {"C": c}, content=bytes([c]))[0].number for c in (1, 2)]
    record = {"gain": None, "end_to_end": {"n": 3, "accuracy": 1.0, "ci": [1.0, 1.0]}}
    assert registry.set_alias("m", numbers[0], actor="gate", reason="first", pipeline_scores=[("p", record)]) is None
    assert registry.set_alias("m", numbers[1], actor="manual", reason="by hand", pipeline_scores=[]) == numbers[0]
    # a score that cannot be stored (no pipeline): the alias stays where it was
    with pytest.raises(IntegrityError):
        registry.set_alias("m", numbers[0], actor="manual", reason="x", pipeline_scores=[(None, record)])  # type: ignore[list-item]
    assert registry.alias("m") == numbers[1]
    judged: list[int] = []
    assert registry.rollback("m", pipeline_scores=lambda version: judged.append(version) or [("q", record)]) == 1
    assert judged == [numbers[0]]
    scores = registry.pipeline_scores("p") + registry.pipeline_scores("q")
    assert [(s.pipeline, s.model, s.from_version, s.to_version, s.actor, s.record) for s in scores] == [
        ("p", "m", None, 1, "gate", record),
        ("q", "m", 2, 1, "rollback", record),
    ]
    assert registry.pipeline_scores("other") == []


def _writer(url: str, root: str, worker: int, out: multiprocessing.Queue) -> None:
    reg = Registry(url, Path(root))
    try:
        made = []
        for i in range(6):
            # every worker also tries recipes the others try: they must not duplicate
            family = f"f{i % 3}"
            version, created = register(reg, family, {"C": i // 3}, content=f"{worker}-{i}".encode())
            made.append((version.number, family, i // 3, created))
            reg.set_alias("m", version.number, actor="gate", reason=f"worker {worker}")
        out.put(("ok", made))
    except Exception as error:  # reported to the parent test
        out.put(("error", repr(error)))
    finally:
        reg.close()


def test_concurrent_writers_never_lock_or_duplicate(registry: Registry, registry_url: str, tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    processes = [
        context.Process(target=_writer, args=(registry_url, str(tmp_path / "artifacts"), w, out)) for w in range(4)
    ]
    for p in processes:
        p.start()
    results = [out.get(timeout=120) for _ in processes]
    for p in processes:
        p.join(timeout=60)
    assert all(status == "ok" for status, _ in results), results
    versions = registry.versions("m")
    recipes = {(v.family, v.params["C"]) for v in versions}
    assert len(versions) == len(recipes) == 6
    assert sorted(v.number for v in versions) == list(range(1, 7))
    assert sum(created for _, made in results for *_, created in made) == 6
    assert len(registry.alias_history("m")) == 24


def _slot_recorder(url: str, root: str, start: Any, out: multiprocessing.Queue) -> None:
    reg = Registry(url, Path(root))
    try:
        start.wait(60)  # every process records the same slots at once
        out.put([reg.record_event_once("m", "drift_check", f"slot {i}", "checked", 1, {"n": i}) for i in range(5)])
    except Exception as error:  # reported to the parent test
        out.put(repr(error))
    finally:
        reg.close()


def test_an_event_per_slot_is_recorded_once_by_concurrent_processes(
    registry: Registry, registry_url: str, tmp_path: Path
) -> None:
    """Several workers finishing the same interval's drift check at once: exactly one records it (and alerts)."""
    context = multiprocessing.get_context("spawn")
    out, start = context.Queue(), context.Event()
    processes = [
        context.Process(target=_slot_recorder, args=(registry_url, str(tmp_path / "artifacts"), start, out))
        for _ in range(4)
    ]
    for p in processes:
        p.start()
    start.set()
    results = [out.get(timeout=120) for _ in processes]
    for p in processes:
        p.join(timeout=60)
    assert all(isinstance(r, list) for r in results), results
    assert [sum(r[i] for r in results) for i in range(5)] == [1] * 5  # each slot recorded by exactly one
    events = registry.events("m", kind="drift_check")
    assert [e.payload["slot"] for e in events] == [f"slot {i}" for i in range(5)]
    assert not registry.record_event_once("m", "drift_check", "slot 4", "again", 1, {})
    assert registry.record_event_once("m", "drift_check", "slot 5", "next", 1, {})


def test_events_of_one_kind_are_listed_and_counted_per_model(registry: Registry) -> None:
    registry.ensure_model("other", "text-classification")
    registry.record_event("m", "drift", "first", 1, {"slot": "a"})
    registry.record_event("m", "rejected", "not this kind")
    registry.record_event("m", "drift", "second", 1)
    registry.record_event("other", "drift", "of another model")
    assert [e.message for e in registry.events("m", kind="drift")] == ["first", "second"]
    assert registry.events("m", kind="drift")[0].payload == {"slot": "a"}
    assert registry.count_events("drift") == {"m": 2, "other": 1}
    assert registry.count_events("nothing") == {}
