"""Text classification: a text column and a label column; one label per text."""

from __future__ import annotations

import re
from collections import Counter

import pandas as pd

from shoal.data.errors import DropRejected, Problem
from shoal.data.readers import LINE
from shoal.fleet import ModelSpec
from shoal.tasks.base import TaskKind, Validated

_SPACE = re.compile(r"\s+")
IMBALANCE_RATIO = 20
TINY_CLASS = 5


def normalize(text: str) -> str:
    """The form two texts must share to count as the same example."""
    return _SPACE.sub(" ", text).strip().lower()


class TextClassification(TaskKind):
    name = "text-classification"
    columns = ("text", "label")

    def validate(self, frame: pd.DataFrame, spec: ModelSpec, source: str, *, skip_invalid: bool) -> Validated:
        missing = [c for c in (spec.text_column, spec.label_column) if c not in frame.columns]
        if missing:
            present = ", ".join(c for c in frame.columns if c != LINE) or "none"
            raise DropRejected(
                source,
                [
                    Problem(
                        None,
                        f"missing column(s) {', '.join(missing)} "
                        f"(columns present: {present}); set text_column / "
                        "label_column in shoal.yaml",
                    )
                ],
            )
        if frame.empty:
            raise DropRejected(source, [Problem(None, "the file has no rows")])
        lines = frame[LINE].tolist()
        texts = [_as_text(v) for v in frame[spec.text_column]]
        labels = [_as_text(v) for v in frame[spec.label_column]]
        allowed = set(spec.labels) if spec.labels is not None else None
        problems: list[Problem] = []
        seen: dict[str, tuple[int, str]] = {}
        for line, text, label in zip(lines, texts, labels, strict=True):
            if text is None or not text.strip():
                problems.append(Problem(line, f"empty text in column {spec.text_column!r}"))
                continue
            if label is None or not label.strip():
                problems.append(Problem(line, f"empty label in column {spec.label_column!r}"))
                continue
            if allowed is not None and label not in allowed:
                problems.append(
                    Problem(line, f"label {label!r} is not in the declared labels ({', '.join(sorted(allowed))})")
                )
                continue
            key = normalize(text)
            first = seen.setdefault(key, (line, label))
            if first[1] != label:
                problems.append(
                    Problem(line, f"the same text is labelled {label!r} here and {first[1]!r} at line {first[0]}")
                )
        bad = {p.line for p in problems}
        if problems and not skip_invalid:
            raise DropRejected(source, problems)
        keep = [line not in bad for line in lines]
        clean = pd.DataFrame(
            {
                "text": [t for t, k in zip(texts, keep, strict=True) if k],
                "label": [lab for lab, k in zip(labels, keep, strict=True) if k],
            }
        )
        if clean.empty:
            raise DropRejected(source, [*problems, Problem(None, "no valid rows left")])
        return Validated(clean, _class_warnings(clean["label"]), [str(p) for p in problems])

    def split_keys(self, frame: pd.DataFrame) -> pd.Series:
        return frame["text"].map(normalize)

    def assemble(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
        notes: list[str] = []
        frame = frame.assign(key=frame["text"].map(normalize))
        test = frame[frame["split"] == "test"]
        train = frame[frame["split"] == "train"]
        # a later drop's label wins for the same text (feedback corrects earlier labels)
        deduped = train.drop_duplicates("key", keep="last")
        if len(deduped) < len(train):
            notes.append(f"{len(train) - len(deduped)} repeated training texts merged (latest label kept)")
        leaking = deduped["key"].isin(set(test["key"]))
        if leaking.any():
            notes.append(f"{int(leaking.sum())} training texts also in the test set left out of training")
        train = deduped[~leaking]
        columns = ["text", "label"]
        return train[columns].reset_index(drop=True), test[columns].reset_index(drop=True), notes


def _as_text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value)


def _class_warnings(labels: pd.Series) -> list[str]:
    counts = Counter(labels)
    warnings = []
    tiny = sorted(label for label, n in counts.items() if n < TINY_CLASS)
    if tiny:
        warnings.append(
            f"tiny classes (< {TINY_CLASS} rows): {', '.join(tiny[:10])}" + (" ..." if len(tiny) > 10 else "")
        )
    if len(counts) > 1 and max(counts.values()) >= IMBALANCE_RATIO * min(counts.values()):
        common, rare = counts.most_common()[0], counts.most_common()[-1]
        warnings.append(f"class imbalance: {common[0]!r} has {common[1]} rows, {rare[0]!r} has {rare[1]}")
    return warnings
