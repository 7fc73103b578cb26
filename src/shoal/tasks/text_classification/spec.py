"""A text-classification model in the fleet file."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from shoal.cascade.spec import CascadeSpec
from shoal.fleet import ModelSpec
from shoal.llm.spec import ColdStartSpec

#: the default families; a model whose first training data has fewer than SMALL_ROWS rows also gets minilm-logreg
#: when the embeddings extra is installed (`defaults.choose`)
STATIC_FAMILIES = ["majority", "tfidf-logreg", "tfidf-svm"]
SMALL_ROWS = 2_000
_F1_OF_CLASS = re.compile(r"^f1:(?P<label>.+)$")


class TextClassificationSpec(ModelSpec):
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1", "macro_recall", "mcc")
    data_chosen: ClassVar[tuple[str, ...]] = ("metric", "class_weight", "families")
    data_chosen_groups: ClassVar[tuple[tuple[str, ...], ...]] = (("metric", "class_weight"), ("families",))

    task: Literal["text-classification"]
    text_column: str = "text"
    label_column: str = "label"
    labels: list[str] | None = Field(None, description="declared label set; other labels are rejected")
    relabel: Literal["supersede", "reject"] = Field(
        "supersede",
        description="a drop that gives a stored text another label: supersede (the latest label is used in train "
        "and test, the drop warns and 'shoal data issues' lists it) or reject (the drop is refused)",
    )
    metric: str = Field(
        "accuracy",
        description="default: chosen from the data at the model's first training (macro_f1 when its classes are "
        "imbalanced, else accuracy) and kept for the model's life",
    )
    class_weight: Literal["balanced", "none"] = Field(
        "none",
        description="balanced: each class weighs inversely to its share of the training rows, in the families that "
        "support it (tfidf-logreg, tfidf-svm); default: chosen with the metric (balanced when classes are imbalanced)",
    )
    families: list[str] = Field(
        default_factory=lambda: list(STATIC_FAMILIES),
        description="candidate families; default: these three, and minilm-logreg when the model's first training "
        f"data is small (under {SMALL_ROWS:,} rows) and the embeddings extra is installed (chosen once, kept for "
        "its life)",
    )
    cascade: CascadeSpec | None = Field(None, description="send the inputs this model is unsure of to a fallback")
    llm: ColdStartSpec | None = Field(
        None,
        description="cold start: an LLM endpoint answers until a small version is promoted, then becomes its cascade "
        "fallback (needs labels)",
    )

    @classmethod
    def metric_choices(cls) -> str:
        return f"{super().metric_choices()} or 'f1:<label>'"

    @classmethod
    def allows_metric(cls, metric: str) -> bool:
        return super().allows_metric(metric) or _F1_OF_CLASS.match(metric) is not None

    @model_validator(mode="after")
    def _f1_label_is_declared(self) -> TextClassificationSpec:
        label = self.positive_label
        if label is not None and self.labels is not None and label not in self.labels:
            raise ValueError(f"metric {self.metric!r} names a label that is not in labels")
        if self.llm is not None and not self.labels:
            raise ValueError("llm: the LLM answers one of the declared labels: set labels")
        return self

    @property
    def positive_label(self) -> str | None:
        match = _F1_OF_CLASS.match(self.metric)
        return match["label"] if match else None
