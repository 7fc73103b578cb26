"""`memorized`: the entity names of the training sentences, found again wherever their tokens recur (longest first,
case-sensitive), with the type they had most often. Token classification's floor (what any learned tagger must
significantly beat: WNUT-17's test entities are mostly new names) and its cheapest candidate."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shoal.families import register
from shoal.families.base import Family, Params, read_json, write_json
from shoal.families.entity_tagger import EntityPredictor, entity_output
from shoal.families.runtime.tokens import Entities, Found, tokenize

NAMES_FILE = "names.json"


class Memorized(EntityPredictor):
    portable = True

    def __init__(self, names: dict[tuple[str, ...], str]) -> None:
        self.names = names
        self.longest = max((len(name) for name in names), default=0)

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
        return entity_output([self._find(text) for text in inputs])

    def _find(self, text: str) -> list[Found]:
        tokens = tokenize(text)
        words = [text[a:b] for a, b in tokens]
        found: list[Found] = []
        i = 0
        while i < len(words):
            for size in range(min(self.longest, len(words) - i), 0, -1):
                label = self.names.get(tuple(words[i : i + size]))
                if label is not None:
                    found.append((tokens[i][0], tokens[i + size - 1][1], label, 1.0))
                    i += size
                    break
            else:
                i += 1
        return found

    def save(self, folder: Path) -> None:
        write_json(folder / NAMES_FILE, [[list(name), label] for name, label in sorted(self.names.items())])

    def n_parameters(self) -> int:
        return len(self.names)


@register
class MemorizedFamily(Family):
    name = "memorized"
    task = "token-classification"
    cost = 0.1
    expected_p95_ms = 1.0
    expected_size_mb = 1.0
    expected_train_seconds_per_1k_rows = 0.1

    def fit(self, inputs: Sequence[str], targets: Sequence[Entities], params: Params, seed: int) -> Memorized:
        seen: defaultdict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
        for text, target in zip(inputs, targets, strict=True):
            for start, end, label in target.spans:
                words = text[start:end]
                name = tuple(words[a:b] for a, b in tokenize(words))
                if name:
                    seen[name][label] += 1
        # the most frequent type; ties go to the first in name order (stable whatever the row order)
        return Memorized({name: min(c, key=lambda lab: (-c[lab], lab)) for name, c in seen.items()})

    def load(self, folder: Path) -> Memorized:
        return Memorized({tuple(name): label for name, label in read_json(folder / NAMES_FILE)})
