"""Texts a later drop gave another label (text classification with `relabel: supersede`).

The drops themselves are the record: each keeps the label it was ingested with, and training and the test set use
the latest (`TextClassification.assemble`). `relabels` reads that history back for `shoal data issues`.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal.registry import Registry
from shoal.tasks.text_classification import normalize


@dataclass(frozen=True)
class Relabel:
    text: str  # as the latest drop wrote it
    history: list[tuple[str, str]]  # (label, drop hash) at each change, oldest first; the last label is used

    @property
    def label(self) -> str:
        return self.history[-1][0]


def relabels(registry: Registry, model: str) -> list[Relabel]:
    """Every stored text whose label a later drop changed, in the order first stored (none for a model whose drops
    have no labels)."""
    if model not in registry.model_names():
        return []
    history: dict[str, list[tuple[str, str]]] = {}
    texts: dict[str, str] = {}
    for drop in registry.drops(model):
        frame = registry.load_drops([drop])
        if not {"text", "label"} <= set(frame.columns):
            return []
        for text, label in zip(frame["text"], frame["label"], strict=True):
            key = normalize(text)
            steps = history.setdefault(key, [])
            if not steps or steps[-1][0] != label:
                steps.append((label, drop.hash))
            texts[key] = text
    return [Relabel(texts[key], steps) for key, steps in history.items() if len(steps) > 1]
