"""A regression model in the fleet file."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from shoal.fleet import ModelSpec


class RegressionSpec(ModelSpec):
    metrics: ClassVar[tuple[str, ...]] = ("mae", "rmse", "r2", "mape")

    task: Literal["regression"]
    target_column: str = Field(description="the numeric column to predict")
    metric: str = "mae"
    families: list[str] = Field(default_factory=lambda: ["mean", "ridge", "gbm"])

    @model_validator(mode="before")
    @classmethod
    def _needs_target(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("target_column"):
            raise ValueError("a regression model needs target_column (shoal add --target COLUMN)")
        return data
