"""A window of served inputs against a version's reference sample: has the traffic moved?

A reference holds a bounded sample of the version's training inputs and the answers it gave on its test set (so
"the answers moved" compares like with like). A window is checked with the tests its inputs allow:

- texts: a kernel MMD on character n-gram features (hashed, so the reference stores no vocabulary of n-grams),
  the length (KS), the out-of-vocabulary rate against the training words (KS) and the share of letters outside the
  Latin script (KS: a language-free stand-in for a language mix);
- table rows: each column (KS for numbers, chi-squared for categories) and all numeric columns together (MMD on
  values standardised by the reference);
- every task: the answers (chi-squared for labels, KS for values);
- a task whose answers' outcomes arrive later as data (forecasts and the values realised since): the served answers'
  errors against the version's errors on its test set — their bias (mean signed error) and their size (mean absolute
  error, only an increase alerts, compared as a ratio: on the log scale), each a t-test on the means of blocks of one
  answer's span (a forecast's horizon, as its backtest windows are), since errors are correlated within a span, drift
  in level across spans and neighbouring spans share a season (`stats.mean_shift_test`).

The window's tests are corrected together (Benjamini–Hochberg) at the window's `level`, so on traffic that has not
moved a window alerts with probability at most `level`; `level_for_budget` turns a fleet's alert budget (false alarms
per week) into that level. A window smaller than `min_samples` (inputs, or realised outcomes) gets no verdict.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import HashingVectorizer

from shoal.monitor.stats import benjamini_hochberg, chi2_test, ks_test, mean_shift_test, mmd_test

if TYPE_CHECKING:
    from shoal.tasks.base import Errors

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
    """A window's outcome: its size (in `unit`), its tests (none when too small) and why there is no verdict, if
    there is none."""

    n: int
    level: float
    findings: list[Finding] = field(default_factory=list)
    pending: str | None = None
    unit: str = "inputs"

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
        return _pending(n, level, min_samples, "inputs")
    if isinstance(inputs, pd.DataFrame):
        findings = _row_tests(reference, inputs, permutations, seed)
    else:
        findings = _text_tests(reference, inputs, permutations, seed)
    if answers and isinstance(answers[0], str):
        findings.append(Finding("predicted labels (chi²)", *chi2_test(reference.answers, list(answers))))
    elif answers:
        findings.append(Finding("predicted values (KS)", *ks_test(reference.answers, answers)))
    return _corrected(n, level, [*findings, *extra], "inputs")


def check_errors(reference: Callable[[], Errors], served: Errors, *, level: float, min_samples: int) -> Verdict:
    """The verdict on the errors of served answers whose outcomes have arrived (`served`) against the version's
    errors on its test set (`reference()`, computed only for a verdict): has the bias moved, have the errors grown?
    Each a t-test on block means (`stats.mean_shift_test`, blocks of the answers' span), corrected together at
    `level`; no verdict below `min_samples` served errors, or with fewer than three blocks in all."""
    unit = f"realised {served.name} points"
    if len(served) < min_samples:
        return _pending(len(served), level, min_samples, unit)
    tested = reference()
    block = max(tested.block, served.block)
    before_bias, before_size = float(np.mean(tested.signed)), float(np.mean(np.abs(tested.signed)))
    try:
        bias = mean_shift_test((tested.signed, tested.times), (served.signed, served.times), block=block)
        size = mean_shift_test(
            (np.abs(tested.signed), tested.times),
            (np.abs(served.signed), served.times),
            block=block,
            greater_only=True,
            ratio=True,
        )
    except ValueError as few:
        return Verdict(len(served), level, pending=f"{few} (raise the test set's windows)", unit=unit)
    findings = [
        Finding(f"{served.name} bias (mean scaled error) vs test {before_bias:+.3g}", *bias),
        Finding(f"{served.name} error (mean |scaled error|) vs test {before_size:.3g}", *size),
    ]
    return _corrected(len(served), level, findings, unit)


def _pending(n: int, level: float, min_samples: int, unit: str) -> Verdict:
    return Verdict(n, level, pending=f"{n} {unit} in the window; a verdict needs at least {min_samples}", unit=unit)


def _corrected(n: int, level: float, findings: list[Finding], unit: str) -> Verdict:
    """The window's findings corrected together (Benjamini–Hochberg at `level`)."""
    # a test with nothing to compare (a column empty on both sides) gives NaN: no evidence, never an alert
    findings = [f if math.isfinite(f.p_value) else Finding(f.test, 0.0, 1.0) for f in findings]
    fired = benjamini_hochberg([finding.p_value for finding in findings], level)
    return Verdict(
        n,
        level,
        [Finding(f.test, f.statistic, f.p_value, bool(hit)) for f, hit in zip(findings, fired, strict=True)],
        unit=unit,
    )
