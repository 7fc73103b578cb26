"""A window of served inputs against a version's reference sample: has the traffic moved?

A reference holds a bounded sample of the version's training inputs and the answers it gave on its test set (so
"the answers moved" compares like with like). A window is checked with the tests its inputs allow:

- texts: a kernel MMD on character n-gram features (hashed, so the reference stores no vocabulary of n-grams),
  the length (KS), the out-of-vocabulary rate against the training words (KS) and the share of letters outside the
  Latin script (KS: a language-free stand-in for a language mix);
- table rows: each column (KS for numbers, chi-squared for categories) and all numeric columns together (MMD on
  values standardised by the reference);
- every task: the answers (chi-squared for labels, KS for values).

The window's tests are corrected together (Benjamini–Hochberg) at the window's `level`, so on traffic that has not
moved a window alerts with probability at most `level`; `level_for_budget` turns a fleet's alert budget (false alarms
per week) into that level. A window smaller than `min_samples` gets no verdict.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import HashingVectorizer

from shoal.monitor.stats import benjamini_hochberg, chi2_test, ks_test, mmd_test

MAX_PERMUTATIONS = 5000
LATIN_END = 0x24F  # the last code point of Latin Extended-B
_WORD = re.compile(r"\w+")
_FEATURES = HashingVectorizer(analyzer="char_wb", ngram_range=(2, 4), n_features=2**16, alternate_sign=False)


@dataclass(frozen=True)
class Finding:
    """One test of a window: what it compared, its statistic and p-value, and whether it fired after correction."""

    test: str
    statistic: float
    p_value: float
    fired: bool = False


@dataclass(frozen=True)
class Verdict:
    """A window's outcome: its size, its tests (none when too small) and why there is no verdict, if there is none."""

    n: int
    level: float
    findings: list[Finding] = field(default_factory=list)
    pending: str | None = None

    @property
    def drifted(self) -> bool:
        return any(finding.fired for finding in self.findings)

    def summary(self) -> str:
        if self.pending is not None:
            return self.pending
        fired = [f"{f.test} (p={f.p_value:.2g})" for f in self.findings if f.fired]
        return (
            f"drift in {', '.join(fired)}" if fired else f"no drift ({len(self.findings)} tests, level {self.level:g})"
        )


def level_for_budget(false_alarms_per_week: float, windows_per_week: float) -> float:
    """The per-window level that keeps the expected false alarms of `windows_per_week` windows within the budget."""
    if false_alarms_per_week <= 0 or windows_per_week <= 0:
        raise ValueError("the alert budget and the number of windows per week must be positive")
    return min(1.0, false_alarms_per_week / windows_per_week)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Reference:
    """What a window is compared with: a sample of training inputs (texts or rows), the words of the other training
    texts (for the out-of-vocabulary rate), and the version's answers on its test set (labels or values)."""

    inputs: list[str] | pd.DataFrame
    answers: list[Any]
    vocabulary: frozenset[str] = frozenset()

    @classmethod
    def of_texts(cls, training: Sequence[str], answers: Sequence[Any], *, size: int, seed: int) -> Reference:
        """`size` training texts as the sample, and the words of the *other* training texts as the vocabulary, so
        the sample's out-of-vocabulary rates are those of unseen texts, as a window's are."""
        chosen = np.random.default_rng(seed).choice(len(training), min(size, len(training) // 2), replace=False)
        taken = set(chosen.tolist())
        vocabulary = frozenset(word for i, text in enumerate(training) if i not in taken for word in words(text))
        return cls([training[i] for i in chosen], list(answers), vocabulary)

    @classmethod
    def of_rows(cls, training: pd.DataFrame, answers: Sequence[Any], *, size: int, seed: int) -> Reference:
        sample = training.sample(min(size, len(training)), random_state=seed).reset_index(drop=True)
        return cls(sample, list(answers))


def _oov_rate(text: str, vocabulary: frozenset[str]) -> float:
    found = words(text)
    return sum(word not in vocabulary for word in found) / len(found) if found else 0.0


def other_script_share(text: str) -> float:
    """The share of a text's letters outside the Latin script (Greek, Cyrillic, Arabic, CJK, ...): a language-free
    stand-in for "which languages" that needs no language model."""
    letters = [c for c in text if c.isalpha()]
    return sum(ord(c) > LATIN_END for c in letters) / len(letters) if letters else 0.0


def _text_tests(reference: Reference, texts: list[str], permutations: int, seed: int) -> list[Finding]:
    assert isinstance(reference.inputs, list)
    statistic, p = mmd_test(
        _FEATURES.transform(reference.inputs), _FEATURES.transform(texts), permutations=permutations, seed=seed
    )
    findings = [Finding("text features (MMD)", statistic, p)]
    findings.append(Finding("text length (KS)", *ks_test([len(t) for t in reference.inputs], [len(t) for t in texts])))
    oov = ks_test(
        [_oov_rate(t, reference.vocabulary) for t in reference.inputs],
        [_oov_rate(t, reference.vocabulary) for t in texts],
    )
    scripts = ks_test([other_script_share(t) for t in reference.inputs], [other_script_share(t) for t in texts])
    return [*findings, Finding("out-of-vocabulary rate (KS)", *oov), Finding("non-Latin letter share (KS)", *scripts)]


def _row_tests(reference: Reference, rows: pd.DataFrame, permutations: int, seed: int) -> list[Finding]:
    assert isinstance(reference.inputs, pd.DataFrame)
    findings, numeric = [], []
    for column in reference.inputs.columns:
        before = reference.inputs[column]
        now = rows[column] if column in rows.columns else pd.Series(dtype=before.dtype)
        if before.isna().all():  # nothing to compare with
            continue
        if now.isna().all():  # a feature the traffic stopped sending
            findings.append(Finding(f"column {column} missing from every input", 1.0, 0.0))
        elif pd.api.types.is_numeric_dtype(before):
            numeric.append(column)
            findings.append(Finding(f"column {column} (KS)", *ks_test(before.dropna(), now.dropna())))
        else:
            findings.append(
                Finding(f"column {column} (chi²)", *chi2_test(before.astype(str).tolist(), now.astype(str).tolist()))
            )
    if len(numeric) > 1:
        before = reference.inputs[numeric].to_numpy(float)
        center, scale = np.nanmean(before, axis=0), np.nanstd(before, axis=0) + 1e-12
        standard = [
            np.nan_to_num((frame[numeric].to_numpy(float) - center) / scale) for frame in (reference.inputs, rows)
        ]
        findings.append(
            Finding("all numeric columns (MMD)", *mmd_test(*standard, permutations=permutations, seed=seed))
        )
    return findings


def check(
    reference: Reference,
    inputs: list[str] | pd.DataFrame,
    answers: Sequence[Any],
    *,
    level: float,
    min_samples: int,
    permutations: int | None = None,
    seed: int = 0,
    extra: Sequence[Finding] = (),
) -> Verdict:
    """The verdict on one window: `inputs` served and the `answers` given to them, against `reference`. The MMD's
    permutations default to enough for its smallest p-value to pass the correction at `level` among up to 20 tests.
    `extra` findings (the quality checks of `shoal.monitor.watch`) are corrected together with the window's tests."""
    n = len(inputs)
    permutations = permutations or min(MAX_PERMUTATIONS, math.ceil(20 / level))
    if n < min_samples:
        return Verdict(n, level, pending=f"{n} inputs in the window; a verdict needs at least {min_samples}")
    if isinstance(inputs, pd.DataFrame):
        findings = _row_tests(reference, inputs, permutations, seed)
    else:
        findings = _text_tests(reference, inputs, permutations, seed)
    if answers and isinstance(answers[0], str):
        findings.append(Finding("predicted labels (chi²)", *chi2_test(reference.answers, list(answers))))
    elif answers:
        findings.append(Finding("predicted values (KS)", *ks_test(reference.answers, answers)))
    findings.extend(extra)
    # a test with nothing to compare (a column empty on both sides) gives NaN: no evidence, never an alert
    findings = [f if math.isfinite(f.p_value) else Finding(f.test, 0.0, 1.0) for f in findings]
    fired = benjamini_hochberg([finding.p_value for finding in findings], level)
    return Verdict(
        n, level, [Finding(f.test, f.statistic, f.p_value, bool(hit)) for f, hit in zip(findings, fired, strict=True)]
    )
