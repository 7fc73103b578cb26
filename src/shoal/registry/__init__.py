"""The registry: versions, aliases, data drops, events and jobs in a database; artifacts in a store."""

from shoal.registry.artifacts import ArtifactError, ArtifactStore
from shoal.registry.database import PRODUCTION, Registry, RegistryError, params_hash, resolve_url
from shoal.registry.records import (
    AliasChange,
    Drop,
    Event,
    Job,
    ModelDefaults,
    PipelineDrop,
    PipelineScore,
    Version,
)

__all__ = [
    "PRODUCTION",
    "AliasChange",
    "ArtifactError",
    "ArtifactStore",
    "Drop",
    "Event",
    "Job",
    "ModelDefaults",
    "PipelineDrop",
    "PipelineScore",
    "Registry",
    "RegistryError",
    "Version",
    "params_hash",
    "resolve_url",
]
