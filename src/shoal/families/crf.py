"""`crf`: a linear-chain CRF (CRFsuite, through python-crfsuite) on hand-made token features: the word and its
lowercase, prefixes and suffixes, its shape (`Xxxx`, `dd`), case, digits, hyphens, @mentions, #hashtags and URLs,
and the same of the two tokens on each side. Trained with L-BFGS and elastic-net regularisation (the search picks
c1/c2). The artifact is CRFsuite's own binary model file (no pickle) and `crf.json` (the feature version); each entity
is scored with the mean marginal probability of its tokens' tags.
"""

from __future__ import annotations

import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shoal.families import register
from shoal.families.base import Family, Params, read_json, write_json
from shoal.families.entity_tagger import EntityPredictor, entity_output, tagged
from shoal.families.runtime.tokens import Entities, spans_of, tokenize

MODEL_FILE = "model.crfsuite"
CONFIG_FILE = "crf.json"
#: the feature set's version: an artifact made with other features is refused at load
FEATURES = 2
_SHAPE = [(re.compile(r"[A-Z]"), "X"), (re.compile(r"[a-z]"), "x"), (re.compile(r"[0-9]"), "d")]
_RUNS = re.compile(r"(.)\1+")


def shape(word: str) -> str:
    for pattern, letter in _SHAPE:
        word = pattern.sub(letter, word)
    return word


def short_shape(word: str) -> str:
    """The shape with each run of a letter class written once (`Xx`, `d.d`)."""
    return _RUNS.sub(r"\1", shape(word))


def _word_features(word: str, prefix: str) -> dict[str, Any]:
    lower = word.lower()
    return {
        f"{prefix}lower={lower}": 1.0,
        f"{prefix}shape={short_shape(word)}": 1.0,
        f"{prefix}title": float(word.istitle()),
        f"{prefix}upper": float(word.isupper()),
        f"{prefix}suffix3={lower[-3:]}": 1.0,
    }


def token_features(words: Sequence[str]) -> list[dict[str, float]]:
    """The features of each token of a sentence, its neighbours' included."""
    out = []
    n = len(words)
    for i, word in enumerate(words):
        lower = word.lower()
        features: dict[str, float] = {
            "bias": 1.0,
            f"word={word}": 1.0,
            f"lower={lower}": 1.0,
            f"prefix1={word[:1]}": 1.0,
            f"prefix2={lower[:2]}": 1.0,
            f"prefix3={lower[:3]}": 1.0,
            f"suffix1={lower[-1:]}": 1.0,
            f"suffix2={lower[-2:]}": 1.0,
            f"suffix3={lower[-3:]}": 1.0,
            f"prefix4={lower[:4]}": 1.0,
            f"suffix4={lower[-4:]}": 1.0,
            f"shape={shape(word)[:12]}": 1.0,
            f"short_shape={short_shape(word)}": 1.0,
            "title": float(word.istitle()),
            "upper": float(word.isupper() and len(word) > 1),
            "lower_case": float(word.islower()),
            "mixed_case": float(any(c.isupper() for c in word[1:]) and any(c.islower() for c in word)),
            "digit": float(word.isdigit()),
            "has_digit": float(any(c.isdigit() for c in word)),
            "hyphen": float("-" in word),
            "mention": float(word.startswith("@")),
            "hashtag": float(word.startswith("#")),
            "url": float(word.startswith(("http", "www."))),
            f"length={min(len(word), 10)}": 1.0,
        }
        if word[:1] in "@#" and len(word) > 1:
            features[f"tag_lower={lower[1:]}"] = 1.0
        if i == 0:
            features["first"] = 1.0
        if i == n - 1:
            features["last"] = 1.0
        for offset in (-2, -1, 1, 2):
            j = i + offset
            if 0 <= j < n:
                features.update(_word_features(words[j], f"{offset:+d}:"))
        if i > 0:
            features[f"bigram={words[i - 1].lower()}|{lower}"] = 1.0
        if i < n - 1:
            features[f"next_bigram={lower}|{words[i + 1].lower()}"] = 1.0
        out.append(features)
    return out


class CRF(EntityPredictor):
    """A CRFsuite model held as its file's bytes; each serving thread opens its own tagger (CRFsuite taggers hold
    per-call state)."""

    portable = True

    def __init__(self, model: bytes) -> None:
        self.model = model
        self._local = threading.local()

    def _tagger(self) -> Any:
        tagger = getattr(self._local, "tagger", None)
        if tagger is None:
            import pycrfsuite

            tagger = pycrfsuite.Tagger()
            tagger.open_inmemory(self.model)
            self._local.tagger = tagger
        return tagger

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
        tagger = self._tagger()
        found = []
        for text in inputs:
            tokens = tokenize(text)
            if not tokens:
                found.append([])
                continue
            tagger.set(self.features([text[a:b] for a, b in tokens]))
            tags = tagger.tag()
            scores = [tagger.marginal(tag, i) for i, tag in enumerate(tags)]
            found.append(spans_of(tokens, tags, scores))
        return entity_output(found)

    def features(self, words: list[str]) -> list[dict[str, float]]:
        """Each token's features (a family with more features adds them here)."""
        return token_features(words)

    def save(self, folder: Path) -> None:
        (folder / MODEL_FILE).write_bytes(self.model)
        write_json(folder / CONFIG_FILE, {"features": FEATURES})

    def n_parameters(self) -> int:
        info = self._tagger().info()
        return len(info.state_features) + len(info.transitions)

    def __getstate__(self) -> dict[str, Any]:
        return {"model": self.model}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["model"])  # type: ignore[misc]


def featurized(
    inputs: Sequence[str], targets: Sequence[Entities], features: Callable[[list[str]], list[dict[str, float]]]
) -> list[tuple[list[dict[str, float]], list[str]]]:
    """The training sentences as (each token's features, its BIO tag)."""
    return [(features([text[a:b] for a, b in tokens]), tags) for text, tokens, tags in tagged(inputs, targets)]


def train_crf(sentences: Sequence[tuple[list[dict[str, float]], list[str]]], params: Params) -> bytes:
    """A CRFsuite model file's bytes, trained with L-BFGS on (features, tags) sentences."""
    import pycrfsuite

    trainer = pycrfsuite.Trainer(verbose=False)
    for features, tags in sentences:
        trainer.append(features, tags)
    trainer.set_params(
        {
            "c1": params.get("c1", 0.1),
            "c2": params.get("c2", 0.01),
            "max_iterations": params.get("max_iterations", 150),
            "feature.possible_transitions": True,
        }
    )
    with tempfile.TemporaryDirectory(prefix="shoal-crf-") as scratch:
        path = Path(scratch) / MODEL_FILE
        trainer.train(str(path))
        return path.read_bytes()


@register
class CRFFamily(Family):
    name = "crf"
    task = "token-classification"
    cost = 3.0
    expected_p95_ms = 2.0
    expected_size_mb = 10.0
    expected_train_seconds_per_1k_rows = 10.0

    def grid(self, n_rows: int) -> list[Params]:
        return [{"c1": 0.1, "c2": 0.01}, {"c1": 0.05, "c2": 0.1}]

    def fit(self, inputs: Sequence[str], targets: Sequence[Entities], params: Params, seed: int) -> CRF:
        return CRF(train_crf(featurized(inputs, targets, token_features), params))

    def load(self, folder: Path) -> CRF:
        config = read_json(folder / CONFIG_FILE)
        if config.get("features") != FEATURES:
            raise ValueError(f"{folder}: crf features version {config.get('features')}, this shoal makes {FEATURES}")
        return CRF((folder / MODEL_FILE).read_bytes())
