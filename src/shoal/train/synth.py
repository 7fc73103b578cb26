"""`shoal synth`: an LLM writes new training examples per label, seeded with the model's real ones; every generated
text is validated before it is stored, as a training drop with its provenance.

For each label with training rows, `per_label` texts are asked for in requests of at most `batch` texts, each seeded
with up to `seeds` real training texts of the label (never generated ones; drawn with the workspace seed: a re-run
asks the same and is answered from the registry's cache). Each generated text is checked, cheapest first, and
dropped for the first reason it meets (`REASONS`):

- `invalid-text`: a text that cannot be stored (a lone surrogate, a NUL: `shoal.data.text`);
- `length`: shorter than half the model's 1st-percentile text length, or longer than twice its 99th;
- `language`: fewer than `MIN_KNOWN_WORDS` of its words appear in the model's texts (another language or script);
- `duplicate` / `duplicate-of-test`: the same text (after normalization) as a training row or an earlier generated
  one / as a test row;
- `near-duplicate` / `near-duplicate-of-test`: character n-gram TF-IDF cosine (of the lower-cased words, without
  punctuation) >= `near` with a training row or an earlier kept generated text / with a test row;
- `teacher-disagrees`: the teacher (`llm`, `llm:NAME`, a version or a family; by default the generator) labels it
  otherwise than the label it was written for;
- `teacher-no-label`: the teacher gave it no label (an invalid answer, an error, the spend cap).

The rows kept are training rows, never test rows. The drop's provenance records the generator, its prompt hash,
the teacher, the teacher's confidence per row and the counts dropped per reason.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shoal.data.ingest import IngestResult, ingest_frame
from shoal.data.readers import LINE
from shoal.data.text import text_problem
from shoal.tasks import get_task
from shoal.tasks.text_classification import normalize
from shoal.train.errors import TrainError
from shoal.train.teach import Progress, label_set, llm_endpoint, model_rows, teacher_labels
from shoal.workspace import Workspace

REASONS = (
    "invalid-text",
    "length",
    "language",
    "duplicate",
    "duplicate-of-test",
    "near-duplicate",
    "near-duplicate-of-test",
    "teacher-disagrees",
    "teacher-no-label",
)
MIN_KNOWN_WORDS = 0.5
BLOCK = 256  # candidates compared at once (a dense block of BLOCK x rows)
_WORD = re.compile(r"[^\W\d_]+")
_TOKEN = re.compile(r"[^\W_]+")


@dataclass
class SynthResult:
    generator: str
    teacher: str
    asked: int  # texts asked for
    generated: int  # texts the generator wrote
    kept: int
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> texts
    outcomes: Counter[str] = field(default_factory=Counter)  # the generator's requests: ok, cached, invalid, ...
    teacher_outcomes: Counter[str] = field(default_factory=Counter)
    dollars: float = 0.0
    problem: str | None = None
    unseeded: list[str] = field(default_factory=list)  # labels without training rows to seed them
    ingest: IngestResult | None = None


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class Checks:
    """The checks that need no teacher, against a model's training and test texts."""

    def __init__(self, train: list[str], test: list[str], near: float) -> None:
        lengths = np.array([len(text) for text in train + test])
        self.min_chars = max(1, math.floor(np.quantile(lengths, 0.01) / 2))
        self.max_chars = math.ceil(np.quantile(lengths, 0.99) * 2)
        self.vocabulary = {word for text in train + test for word in _words(text)}
        self.train, self.test, self.near = train, test, near

    def known_words(self, text: str) -> float:
        words = _words(text)
        return sum(word in self.vocabulary for word in words) / len(words) if words else 0.0

    def run(self, texts: list[str]) -> list[str | None]:
        """Each text's reason to drop it (None: it passes)."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        reasons: list[str | None] = [None] * len(texts)
        train_keys, test_keys = set(map(normalize, self.train)), set(map(normalize, self.test))
        seen: set[str] = set()
        for i, text in enumerate(texts):
            key = normalize(text)
            if text_problem(text) is not None:
                reasons[i] = "invalid-text"
            elif not self.min_chars <= len(text.strip()) <= self.max_chars:
                reasons[i] = "length"
            elif self.known_words(text) < MIN_KNOWN_WORDS:
                reasons[i] = "language"
            elif key in test_keys:
                reasons[i] = "duplicate-of-test"
            elif key in train_keys or key in seen:
                reasons[i] = "duplicate"
            seen.add(key)
        left = [i for i, reason in enumerate(reasons) if reason is None]
        if not left:
            return reasons
        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, preprocessor=_letters)
        vectorizer.fit(self.train + self.test + [texts[i] for i in left])
        candidates = vectorizer.transform([texts[i] for i in left])
        to_test = _max_similarity(candidates, vectorizer.transform(self.test))
        to_train = _max_similarity(candidates, vectorizer.transform(self.train))
        kept = np.zeros(len(left), dtype=bool)
        for start in range(0, len(left), BLOCK):  # each candidate against the earlier ones kept
            among = (candidates[start : start + BLOCK] @ candidates[: start + BLOCK].T).toarray()
            for j in range(start, min(start + BLOCK, len(left))):
                i = left[j]
                if to_test[j] >= self.near:
                    reasons[i] = "near-duplicate-of-test"
                elif to_train[j] >= self.near or (among[j - start, :j][kept[:j]] >= self.near).any():
                    reasons[i] = "near-duplicate"
                else:
                    kept[j] = True
        return reasons


def _letters(text: str) -> str:
    """A text as near-duplicates compare it: lower case, its words and numbers without punctuation."""
    return " ".join(_TOKEN.findall(text.lower()))


def _max_similarity(rows: Any, others: Any) -> np.ndarray:
    """Each of `rows`' largest cosine with one of `others` (L2-normalized sparse rows), a block at a time."""
    if others.shape[0] == 0:
        return np.zeros(rows.shape[0])
    return np.concatenate(
        [
            (rows[start : start + BLOCK] @ others.T).max(axis=1).toarray().ravel()
            for start in range(0, rows.shape[0], BLOCK)
        ]
    )


def seed_rows(ws: Workspace, model: str, train: pd.DataFrame) -> pd.DataFrame:
    """The training rows that may seed the generator: those of drops that were not generated (a re-run draws the
    same seeds, and its requests are answered by the cache)."""
    drops = ws.registry.drops(model)
    generated = [drop for drop in drops if drop.provenance is not None and drop.provenance["kind"] == "synth"]
    if not generated:
        return train
    synthetic = set(ws.registry.load_drops(generated)["text"].map(normalize))
    return train[~train["text"].map(normalize).isin(synthetic)]


def synth(
    ws: Workspace,
    model: str,
    *,
    per_label: int,
    generator: str = "llm",
    teacher: str | None = None,
    seeds: int = 5,
    batch: int = 10,
    near: float = 0.9,
    progress: Callable[[str, int, int], None] | None = None,
) -> SynthResult:
    """Generate, validate and store up to `per_label` new training texts per label (see the module)."""
    from shoal.llm.synth import ExampleRequest, llm_examples

    spec = ws.model(model)
    if not get_task(spec.task).takes_teacher:
        raise TrainError(f"model {model!r} is {spec.task}: shoal synth writes text classification examples only")
    if per_label < 1 or seeds < 1 or batch < 1:
        raise TrainError("--per-label, --seeds and --batch must be at least 1")
    name, endpoint = llm_endpoint(ws, generator)
    teacher = teacher or f"llm:{name}"
    train, test, dataset, _ = model_rows(ws, model)
    if train.empty:
        raise TrainError(f"model {model!r} has no training rows to seed the generator; ingest some labelled data first")
    labels = label_set(ws, model, train)
    real = seed_rows(ws, model, train)
    rng = np.random.default_rng(ws.fleet.workspace.seed)
    requests, unseeded = [], []
    for label in labels:
        pool = real.loc[real["label"] == label, "text"].tolist()
        if not pool:
            unseeded.append(label)
            continue
        for number, start in enumerate(range(0, per_label, batch)):
            chosen = rng.choice(len(pool), size=min(seeds, len(pool)), replace=False)
            requests.append(
                ExampleRequest(label, tuple(pool[i] for i in sorted(chosen)), min(batch, per_label - start), number)
            )
    checks = Checks(train["text"].tolist(), test["text"].tolist(), near)

    def step(what: str) -> Progress | None:
        return None if progress is None else lambda done, total: progress(what, done, total)

    made = llm_examples(
        ws.registry,
        name,
        endpoint,
        requests,
        max_chars=checks.max_chars,
        progress=None if progress is None else lambda done: progress("generating", done, len(requests)),
    )
    asked = [request.label for request, texts in zip(requests, made.texts, strict=True) for _ in texts]
    texts = [text for texts in made.texts for text in texts]
    reasons = checks.run(texts)
    passing = [i for i, reason in enumerate(reasons) if reason is None]
    judged = teacher_labels(ws, model, teacher, [texts[i] for i in passing], train, dataset, step("re-labelling"))
    confidence: dict[int, float | None] = {}
    for i, got, sure in zip(passing, judged.labels, judged.confidence, strict=True):
        if got is None:
            reasons[i] = "teacher-no-label"
        elif got != asked[i]:
            reasons[i] = "teacher-disagrees"
        else:
            confidence[i] = sure
    kept = sorted(confidence)
    dropped = Counter(reason for reason in reasons if reason is not None)
    result = SynthResult(
        f"llm:{name}",
        judged.name,
        sum(request.n for request in requests),
        len(texts),
        len(kept),
        dropped,
        made.outcomes,
        judged.outcomes,
        made.dollars + judged.dollars,
        made.problem or judged.problem,
        unseeded,
    )
    if kept:
        rows = pd.DataFrame(
            {
                LINE: [i + 1 for i in kept],
                spec.text_column: [texts[i] for i in kept],
                spec.label_column: [asked[i] for i in kept],
            }
        )
        provenance = {
            "kind": "synth",
            "generator": f"llm:{name}",
            "generator_model": endpoint.model,
            "prompt_hash": made.prompt_hash,
            "teacher": judged.name,
            "teacher_prompt_hash": judged.record.get("prompt_hash"),
            "confidence": [confidence[i] for i in kept],
            "per_label": per_label,
            "seeds": seeds,
            "generated": len(texts),
            "dropped": {reason: dropped[reason] for reason in REASONS if dropped[reason]},
        }
        result.ingest = ingest_frame(ws, model, rows, source=f"synth:llm:{name}", split="train", provenance=provenance)
    return result
