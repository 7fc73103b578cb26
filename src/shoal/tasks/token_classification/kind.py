"""Token classification's data and judging: sentences with entities of declared types.

A drop is CoNLL (one `token<TAB>tag` per line, or token and tag separated by spaces; a blank line between sentences;
BIO or BIOES tags; read by `shoal.data.readers`) or JSONL, each line either `{"text": ..., "entities": [{"start",
"end", "label"}]}` (character offsets, end exclusive) or `{"tokens": [...], "tags": [...]}`. Given tokens become
the text they spell joined by single spaces. Every row is stored as its text and its entities (character spans), so
training, evaluation and serving all start from text: the model's tokenizer (`shoal.families.runtime.tokens`) is the
one the server runs.

A drop is refused whole, with the line and reason of every problem: an entity type the fleet file does not declare,
a tag that is not O / B- / I- / E- / S-, an I- (or E-) tag that continues no entity (unless `repair_tags: begin`),
a BIOES entity not closed by E-, spans out of the text, overlapping, empty or with whitespace at an end, tokens and
tags of different counts, an empty sentence. A sentence is an example, as a text is in text classification: a later
drop's entities for a sentence (by its normalized text) supersede an earlier drop's, each sentence is kept once in
each set (the official WNUT-17 files repeat a few), a training sentence whose normalized text is in the
test set is left out of training, and the split is by a hash of the normalized text. Scores are entity-level (exact
span and type), with a bootstrap over sentences.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from shoal.data.errors import DropRejected, Problem
from shoal.data.readers import LINE, ONE_TOKEN_PER_LINE
from shoal.data.sets import TestSet, TrainSet
from shoal.data.text import text_problem
from shoal.evaluate import entities as metrics
from shoal.families.runtime.tokens import Entities, Span, boundaries, tokenize
from shoal.fleet import ModelSpec
from shoal.tasks.base import TaskKind, Validated
from shoal.tasks.columns import describe
from shoal.tasks.text_classification import normalize
from shoal.tasks.text_classification.kind import rows_digest
from shoal.tasks.token_classification.spec import TokenClassificationSpec

TEXT, ENTITIES, TOKENS, TAGS = "text", "entities", "tokens", "tags"
_TAG = re.compile(r"^([BIES])-(.+)$")


class Bad(ValueError):
    """A row's problem: its line (None: the row's own) and reason."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.line = line


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_spans(text: Any, entities: Any, types: set[str]) -> tuple[str, list[Span]]:
    """A JSONL row's text and character spans, checked."""
    if not isinstance(text, str):
        raise Bad(f"'text' is {describe(text)}, not a text")
    problem = text_problem(text)
    if problem is not None:
        raise Bad(f"'text': {problem}")
    if not text.strip():
        raise Bad("empty sentence")
    if not _present(entities):
        raise Bad("no 'entities' list (write [] for a sentence without entities)")
    if not isinstance(entities, list):
        raise Bad(f"'entities' is {describe(entities)}, not a list")
    spans = []
    for i, entity in enumerate(entities):
        if not isinstance(entity, dict) or not {"start", "end", "label"} <= set(entity):
            raise Bad(f"entities[{i}] is not an object with start, end and label")
        start, end, label = entity["start"], entity["end"], entity["label"]
        if not (_int(start) and _int(end)):
            raise Bad(f"entities[{i}]: start and end must be integers (character offsets)")
        if not isinstance(label, str) or label not in types:
            raise Bad(f"entities[{i}]: unknown entity type {label!r} (declared: {', '.join(sorted(types))})")
        if not 0 <= start < end <= len(text):
            raise Bad(f"entities[{i}]: span {start}..{end} is out of range for a text of {len(text)} characters")
        if text[start:end] != text[start:end].strip():
            raise Bad(f"entities[{i}]: span {start}..{end} starts or ends with whitespace")
        given = entity.get("text")
        if given is not None and given != text[start:end]:
            raise Bad(
                f"entities[{i}]: its text {given!r} is not the characters {start}..{end} of the text "
                f"({text[start:end]!r}); offsets count Unicode code points"
            )
        spans.append((start, end, label))
    spans.sort()
    for (a, b, _), (c, d, _) in pairwise(spans):
        if c < b:
            raise Bad(f"entities overlap: {a}..{b} and {c}..{d}")
    return text, spans


def parse_tags(
    tokens: Any, tags: Any, types: set[str], bioes: bool, repair: bool, line: int, per_line: bool
) -> tuple[str, list[Span], int]:
    """A tokenized sentence's text (tokens joined by spaces), its spans and the tags repaired. `per_line`: token k is
    on line `line + k` (CoNLL); else the whole sentence is on `line` (JSONL) and a reason names the token."""

    def where(k: int) -> tuple[int | None, str]:
        return (line + k, "") if per_line else (None, f"token {k}: ")

    if not isinstance(tokens, list) or not isinstance(tags, list):
        raise Bad("'tokens' and 'tags' must both be lists")
    if not tokens:
        raise Bad("empty sentence")
    if len(tokens) != len(tags):
        raise Bad(f"{len(tokens)} tokens but {len(tags)} tags")
    parsed: list[tuple[str, str]] = []
    for k, (token, tag) in enumerate(zip(tokens, tags, strict=True)):
        at, prefix = where(k)
        if not isinstance(token, str):
            raise Bad(f"{prefix}the token is {describe(token)}", at)
        if not token.strip() or token != token.strip():
            raise Bad(f"{prefix}empty token, or whitespace at its start or end", at)
        if not isinstance(tag, str):
            raise Bad(f"{prefix}the tag is {describe(tag)}", at)
        for value in (token, tag):
            problem = text_problem(value)
            if problem is not None:
                raise Bad(f"{prefix}{problem}", at)
        if tag == "O":
            parsed.append(("O", ""))
            continue
        match = _TAG.match(tag)
        if match is None:
            raise Bad(f"{prefix}tag {tag!r} is not O or B-/I-/E-/S- and an entity type", at)
        if match[2] not in types:
            raise Bad(f"{prefix}unknown entity type {match[2]!r} (declared: {', '.join(sorted(types))})", at)
        parsed.append((match[1], match[2]))
    starts, position = [], 0
    for token in tokens:
        starts.append(position)
        position += len(token) + 1
    spans: list[Span] = []
    repaired = 0
    # the open entity: its first token (-1: none), type, whether it ended (E-, S-: nothing may continue it) and
    # whether it still needs its E- (BIOES, begun by B-)
    open_at, label, done, needs_end = -1, "", False, False

    def close(end: int) -> None:
        nonlocal open_at
        if open_at >= 0:
            if needs_end and not repair:
                at, prefix = where(open_at)
                raise Bad(f"{prefix}the {label} entity begun here is not closed by E-{label}", at)
            spans.append((starts[open_at], starts[end - 1] + len(tokens[end - 1]), label))
        open_at = -1

    for k, (prefix, kind) in enumerate(parsed):
        if prefix in ("I", "E"):
            if open_at >= 0 and kind == label and not done:
                done = prefix == "E"
                needs_end = needs_end and not done
                continue
            if not repair:
                at, before = where(k)
                raise Bad(f"{before}{prefix}-{kind} without B-{kind} before it (set repair_tags: begin to accept)", at)
            repaired += 1
        close(k)
        if prefix != "O":
            open_at, label = k, kind
            done, needs_end = prefix in ("S", "E"), bioes and prefix in ("B", "I")
    close(len(parsed))
    return " ".join(tokens), spans, repaired


def dump_spans(spans: Sequence[Span]) -> str:
    return json.dumps([list(span) for span in sorted(spans)], ensure_ascii=False, separators=(",", ":"))


def load_spans(stored: str) -> tuple[Span, ...]:
    return tuple((int(a), int(b), str(c)) for a, b, c in json.loads(stored))


def span_array(items: Sequence[Sequence[Span]]) -> np.ndarray:
    """One object per sentence (its spans as a tuple), so numpy never reads the spans as a dimension."""
    out = np.empty(len(items), dtype=object)
    for i, spans in enumerate(items):
        out[i] = tuple(spans)
    return out


class TokenClassification(TaskKind):
    name = "token-classification"
    columns = (TEXT, ENTITIES)
    column_types = ()
    floor_name = "the memorized-names floor"
    report_columns = (
        ("entity_precision", "precision"),
        ("entity_recall", "recall"),
        ("surface_f1", "surface F1"),
    )

    def validate(
        self,
        frame: pd.DataFrame,
        spec: ModelSpec,
        source: str,
        *,
        skip_invalid: bool,
        stored: pd.DataFrame | None = None,
    ) -> Validated:
        assert isinstance(spec, TokenClassificationSpec)
        has = set(frame.columns)
        if not (has & {TEXT, ENTITIES} or has & {TOKENS, TAGS}):
            present = ", ".join(str(c) for c in frame.columns if c != LINE) or "none"
            reason = (
                f"a token-classification drop has 'text' and 'entities' (character spans) or 'tokens' and 'tags' "
                f"(columns present: {present})"
            )
            raise DropRejected(source, [Problem(None, reason)])
        if frame.empty:
            raise DropRejected(source, [Problem(None, "the file has no rows")])
        types, repair = set(spec.entity_types), spec.repair_tags == "begin"
        per_line = bool(frame.attrs.get(ONE_TOKEN_PER_LINE, False))
        column = {name: frame[name].tolist() if name in has else [None] * len(frame) for name in (TEXT, ENTITIES)}
        column |= {name: frame[name].tolist() if name in has else [None] * len(frame) for name in (TOKENS, TAGS)}
        bioes = any(
            isinstance(tag, str) and tag[:2] in ("E-", "S-")
            for tags in column[TAGS]
            if isinstance(tags, list)
            for tag in tags
        )
        problems: list[Problem] = []
        rows: list[tuple[str, str]] = []
        repaired = 0
        for i, line in enumerate(int(x) for x in frame[LINE]):
            text, entities, tokens, tags = (column[name][i] for name in (TEXT, ENTITIES, TOKENS, TAGS))
            spans_given = _present(text) or _present(entities)
            tags_given = _present(tokens) or _present(tags)
            try:
                if spans_given and tags_given:
                    raise Bad("give either text and entities or tokens and tags, not both")
                if spans_given:
                    sentence, spans = parse_spans(text, entities, types)
                elif tags_given:
                    sentence, spans, fixed = parse_tags(tokens, tags, types, bioes, repair, line, per_line)
                    repaired += fixed
                else:
                    raise Bad("empty sentence")
            except Bad as bad:
                problems.append(Problem(bad.line if bad.line is not None else line, str(bad)))
                continue
            rows.append((sentence, dump_spans(spans)))
        problems.sort(key=lambda p: p.line or 0)
        if problems and not skip_invalid:
            raise DropRejected(source, problems)
        if not rows:
            raise DropRejected(source, [*problems, Problem(None, "no valid rows left")])
        clean = pd.DataFrame(rows, columns=[TEXT, ENTITIES])
        return Validated(clean, self._warnings(clean, spec, repaired), [str(p) for p in problems])

    def _warnings(self, clean: pd.DataFrame, spec: TokenClassificationSpec, repaired: int) -> list[str]:
        warnings = []
        if repaired:
            warnings.append(f"{repaired} I-/E- tag(s) that continued no entity began one (repair_tags: begin)")
        seen: Counter[str] = Counter()
        inside = 0
        for text, stored in zip(clean[TEXT], clean[ENTITIES], strict=True):
            spans = load_spans(stored)
            seen.update(label for _, _, label in spans)
            cuts = {point for start, end in tokenize(text) for point in range(start + 1, end)}
            inside += sum(point in cuts for point in boundaries(spans))
        if inside:
            warnings.append(
                f"{inside} entity boundary(ies) fall inside a token of the served tokenizer: training splits the token "
                "there, but a served prediction cannot end or start inside a token"
            )
        missing = [label for label in spec.entity_types if label not in seen]
        if missing:
            warnings.append(f"no entity of type(s) {', '.join(missing)} in this drop")
        return warnings

    def split_keys(self, frame: pd.DataFrame) -> pd.Series:
        return frame[TEXT].map(normalize)

    def assemble(
        self, frame: pd.DataFrame, spec: ModelSpec | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
        notes: list[str] = []
        frame = frame.assign(key=self.split_keys(frame))
        # as text classification's labels: a later drop's annotation of a sentence supersedes an earlier one, in train
        # and test alike (re-annotation corrects entities), and each sentence is kept once in each set; the text comes
        # with its entities (their offsets are into that text: the same sentence may differ in case or spacing)
        latest = frame.groupby("key", sort=False)[[TEXT, ENTITIES]].last()
        reannotated = frame.groupby("key", sort=False)[ENTITIES].nunique() > 1
        if reannotated.any():
            notes.append(f"{int(reannotated.sum())} sentence(s) annotated differently again (the latest kept)")
        frame = frame.assign(**{column: frame["key"].map(latest[column]) for column in (TEXT, ENTITIES)})
        once: dict[str, pd.DataFrame] = {}
        for split in ("test", "train"):
            rows = frame[frame["split"] == split]
            once[split] = rows.drop_duplicates("key", keep="last")
            if len(once[split]) < len(rows):
                notes.append(f"{len(rows) - len(once[split])} repeated {split} sentences merged")
        test, train = once["test"], once["train"]
        leaking = train["key"].isin(set(test["key"]))
        if leaking.any():
            notes.append(f"{int(leaking.sum())} training sentences also in the test set left out of training")
        columns = [TEXT, ENTITIES]
        return train[~leaking][columns].reset_index(drop=True), test[columns].reset_index(drop=True), notes

    def train_set(self, train: pd.DataFrame, spec: ModelSpec | None = None) -> TrainSet:
        targets = [
            Entities(text, load_spans(stored)) for text, stored in zip(train[TEXT], train[ENTITIES], strict=True)
        ]
        if not any(target.spans for target in targets):
            raise ValueError("needs at least one entity in its training sentences")
        return TrainSet(train[TEXT].tolist(), targets)

    def test_set(self, train: pd.DataFrame, test: pd.DataFrame, spec: ModelSpec | None = None) -> TestSet:
        texts, stored = test[TEXT].tolist(), test[ENTITIES].tolist()
        digest = hashlib.sha256()
        for text, entities in sorted(zip(texts, stored, strict=True)):
            digest.update(text.encode() + b"\0" + entities.encode() + b"\n")
        if isinstance(spec, TokenClassificationSpec):
            types = list(spec.entity_types)
        else:
            types = sorted({label for s in [*stored, *train[ENTITIES]] for _, _, label in load_spans(s)})
        return TestSet(texts, span_array([load_spans(s) for s in stored]), digest.hexdigest(), types)

    # -- judging -----------------------------------------------------------------------------------
    def cv_folds(self, targets: Sequence[Any], folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        folds = max(2, min(folds, len(targets)))
        return list(KFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(targets))))

    def fold_outputs(self, predictor: Any, inputs: list[Any], labels: list[str]) -> np.ndarray:
        return entities_of(predictor, inputs)

    def cv_score(self, targets: Sequence[Any], oof: np.ndarray, metric: str, labels: list[str]) -> float:
        texts, truth = [target.text for target in targets], [target.spans for target in targets]
        return float(metrics.metric_values(metric, texts, truth, list(oof)))

    def gate_outputs(self, predictor: Any, test: TestSet) -> np.ndarray:
        return entities_of(predictor, test.inputs)

    def score(
        self, predictor: Any, test: TestSet, metric: str, *, bootstrap: int, seed: int
    ) -> tuple[dict[str, Any], np.ndarray]:
        found = entities_of(predictor, test.inputs)
        result = metrics.score(
            test.inputs, list(test.truth), list(found), test.labels, metric, bootstrap=bootstrap, seed=seed
        )
        return result, found

    def floor(self, train: TrainSet, test: TestSet) -> np.ndarray:
        from shoal.families import get_family

        predictor = get_family("memorized").fit(train.inputs, train.targets, {}, 0)
        return entities_of(predictor, test.inputs)

    def paired_test(
        self, test: TestSet, challenger: np.ndarray, champion: np.ndarray, metric: str, *, bootstrap: int, seed: int
    ) -> dict[str, Any]:
        return metrics.paired_test(
            test.inputs, list(test.truth), challenger, champion, metric, bootstrap=bootstrap, seed=seed
        )

    def stored_outputs(self, outputs: np.ndarray, test: TestSet) -> dict[str, Any] | None:
        return {"rows": rows_digest(test), "entities": [[list(span) for span in spans] for spans in outputs]}

    def restored_outputs(self, stored: dict[str, Any], test: TestSet) -> np.ndarray | None:
        found = stored.get("entities", [])
        if stored.get("rows") != rows_digest(test) or len(found) != len(test.inputs):
            return None
        return span_array([[(int(a), int(b), str(c)) for a, b, c in spans] for spans in found])


def entities_of(predictor: Any, texts: list[str]) -> np.ndarray:
    """Each text's predicted entities as (start, end, label) spans, sorted (scores left out)."""
    found = predictor.predict_proba(texts)[:, 0]
    return span_array([sorted((a, b, c) for a, b, c, _ in spans) for spans in found])
