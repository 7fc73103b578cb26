"""A workspace: a folder with a fleet file, its registry database and its artifact store."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from shoal.families import Predictor, get_family
from shoal.fleet import FLEET_FILE, Fleet, ModelSpec, load_fleet
from shoal.registry import Registry, Version, resolve_url
from shoal.registry.prediction_log import PredictionLog
from shoal.registry.shared_store import Store, open_store

REGISTRY_ENV = "SHOAL_REGISTRY_URL"
#: the artifact store (a folder, or a URL such as s3://bucket/prefix), over the fleet file's `workspace.artifacts`
ARTIFACTS_ENV = "SHOAL_ARTIFACTS_URL"
#: this node's staging folder and cache of a store at a URL, over the fleet file's `workspace.artifact_cache`
ARTIFACT_CACHE_ENV = "SHOAL_ARTIFACT_CACHE"


class Workspace:
    """Everything a command needs, resolved from one folder. The registry opens on first use."""

    def __init__(self, root: Path | str = ".") -> None:
        self.root = Path(root).resolve()
        self.fleet_path = self.root / FLEET_FILE

    @cached_property
    def fleet(self) -> Fleet:
        return load_fleet(self.fleet_path)

    def reload(self) -> Fleet:
        self.__dict__.pop("fleet", None)
        return self.fleet

    def model(self, name: str) -> ModelSpec:
        return self.fleet.model(name)

    @property
    def registry_url(self) -> str:
        return resolve_url(os.environ.get(REGISTRY_ENV) or self.fleet.workspace.registry, self.root)

    @property
    def artifact_location(self) -> str:
        return os.environ.get(ARTIFACTS_ENV) or self.fleet.workspace.artifacts

    @property
    def artifact_root(self) -> Path:
        """This node's folder of artifacts: the store itself, or for a store at a URL its staging and cache."""
        return self.artifact_store().root

    def artifact_store(self) -> Store:
        cache = os.environ.get(ARTIFACT_CACHE_ENV) or self.fleet.workspace.artifact_cache
        return open_store(self.artifact_location, self.root, Path(cache))

    @cached_property
    def registry(self) -> Registry:
        return Registry(self.registry_url, self.artifact_store())

    def prediction_log(self) -> PredictionLog:
        """A handle on the prediction log, bounded and sampled as the fleet file's `workspace.prediction_log` says."""
        return PredictionLog.for_registry(self.registry, **self.fleet.workspace.prediction_log.model_dump())

    def inbox(self, name: str) -> Path:
        folder = self.model(name).data or f"inbox/{name}"
        path = Path(folder)
        return path if path.is_absolute() else self.root / path

    def close(self) -> None:
        if "registry" in self.__dict__:
            self.registry.close()

    def load_predictor(self, version: Version) -> Predictor:
        """A registered version's predictor, after verifying its artifact checksum."""
        folder = self.registry.artifacts.open(version.artifact_uri, version.checksum)
        return get_family(version.family).load(folder)
