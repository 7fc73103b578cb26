"""Words (shoal's entity tokenizer, `runtime.tokens`) as MiniLM WordPiece ids for the fine-tuned token tagger,
shared by its training (torch) and its serving (ONNX Runtime): each word's sub-tokens, the position of its first
sub-token (where its tag is read and, in training, learned) and each sub-token's case class.

MiniLM's vocabulary is uncased, so a word's case (`Title`, `UPPER`, ...) and its kind (@mention, #hashtag, URL,
digits) go in beside its ids as a small class per sub-token: the tagger embeds it and adds it to the encoder's
output, so capitalisation, the strongest cue for names in tweets, is not lost. Numpy and `tokenizers` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shoal.families.runtime.hf_tokenizer import pad_batch
from shoal.families.runtime.tokens import OUTSIDE

#: case classes; 0 is padding and the special tokens
CASES = ("special", "lower", "title", "upper", "mixed", "digits", "mention", "hashtag", "url", "other")
_CASE = {name: i for i, name in enumerate(CASES)}


def case_of(word: str) -> int:
    """The case class of a word."""
    if word.startswith(("http", "www.")):
        return _CASE["url"]
    if word[:1] == "@" and len(word) > 1:
        return _CASE["mention"]
    if word[:1] == "#" and len(word) > 1:
        return _CASE["hashtag"]
    if any(c.isdigit() for c in word):
        return _CASE["digits"]
    if not any(c.isalpha() for c in word):
        return _CASE["other"]
    if word.isupper():
        return _CASE["upper"] if len(word) > 1 else _CASE["title"]
    if word.istitle():
        return _CASE["title"]
    if word.islower():
        return _CASE["lower"]
    return _CASE["mixed"]


@dataclass(frozen=True)
class Pieces:
    """One sentence as sub-tokens: `ids` and `cases` (with [CLS] and [SEP]) and, per word, the position of its first
    sub-token (-1: the word was cut off by truncation, or has no sub-token)."""

    ids: list[int]
    cases: list[int]
    firsts: list[int]


def pieces(tokenizer: object, sentences: Sequence[Sequence[str]]) -> list[Pieces]:
    """Each sentence's (list of words) sub-tokens; `tokenizer` is a `tokenizers.Tokenizer` with truncation set."""
    nonempty = [list(words) if words else ["."] for words in sentences]
    encodings = tokenizer.encode_batch(nonempty, is_pretokenized=True)  # type: ignore[attr-defined]
    out = []
    for words, encoding in zip(sentences, encodings, strict=True):
        classes = [case_of(word) for word in words]
        cases, firsts = [], [-1] * len(words)
        for position, word in enumerate(encoding.word_ids):
            if word is None or not words:
                cases.append(0)
                continue
            cases.append(classes[word])
            if firsts[word] < 0:
                firsts[word] = position
        out.append(Pieces(list(encoding.ids), cases, firsts))
    return out


def batch(sentences: Sequence[Pieces], pad_id: int) -> dict[str, np.ndarray]:
    """The encoder's feed for sentences: `input_ids`, `attention_mask` and `case_ids`, padded (int64)."""
    ids, mask = pad_batch([s.ids for s in sentences], pad_id)
    cases, _ = pad_batch([s.cases for s in sentences], 0)
    return {"input_ids": ids, "attention_mask": mask, "case_ids": cases}


def word_tags(logits: np.ndarray, sentence: Pieces, tags: Sequence[str]) -> tuple[list[str], list[float]]:
    """Each word's tag (argmax at its first sub-token; O when cut off) and its probability, from one sentence's
    logits (sub-tokens, tags)."""
    z = logits - logits.max(axis=1, keepdims=True)
    proba = np.exp(z)
    proba /= proba.sum(axis=1, keepdims=True)
    out, scores = [], []
    for first in sentence.firsts:
        if first < 0:
            out.append(OUTSIDE)
            scores.append(1.0)
            continue
        best = int(proba[first].argmax())
        out.append(tags[best])
        scores.append(float(proba[first, best]))
    return out, scores
