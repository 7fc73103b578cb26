"""A token-classification (named-entity) model in the fleet file."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from shoal.fleet import ModelSpec

_TYPE = re.compile(r"^[^\s]+$")


class TokenClassificationSpec(ModelSpec):
    metrics: ClassVar[tuple[str, ...]] = ("entity_f1", "entity_precision", "entity_recall", "surface_f1")

    task: Literal["token-classification"]
    entity_types: list[str] = Field(
        min_length=1,
        description="the declared entity types (e.g. person, location); a drop with another type is refused",
    )
    repair_tags: Literal["reject", "begin"] = Field(
        "reject",
        description="an I- (or E-) tag that continues no entity of its type: reject (the drop is refused) or begin "
        "(it starts one, as conlleval reads it; the drop warns how many were repaired)",
    )
    metric: str = Field("entity_f1", description="entity-level F1 (exact span and type) by default")
    families: list[str] = Field(default_factory=lambda: ["memorized", "crf"])

    @field_validator("entity_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("an entity type is listed twice")
        for name in value:
            if not _TYPE.match(name) or name == "O" or name[:2] in ("B-", "I-", "E-", "S-"):
                raise ValueError(f"entity type {name!r}: a name without spaces, not O and not a tag (B-, I-, ...)")
        return value
