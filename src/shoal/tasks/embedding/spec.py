"""An embedding model in the fleet file."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from shoal.fleet import ModelSpec


class EmbeddingSpec(ModelSpec):
    metrics: ClassVar[tuple[str, ...]] = ("spearman",)

    task: Literal["embedding"]
    text_column: str = "text"
    pair_column: str = Field("text_pair", description="the second text of an evaluation pair")
    score_column: str = Field("score", description="the pair's similarity (any numeric scale)")
    metric: str = "spearman"
    families: list[str] = Field(default_factory=lambda: ["static-embed", "minilm-embed"])
