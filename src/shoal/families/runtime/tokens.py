"""Words of a text for token classification (named entities), with their character offsets, and the entity spans
<-> per-token tags conversions every tagger family shares.

The tokenizer is the one the server runs on every input of a token-classification model, and the one training runs
on every sentence, so a model always sees the same tokens: what the API documents (README, "Named entities") is
this function. A token is one of, tried in this order:

- a URL (`http://...`, `https://...`, `www....`) up to the next whitespace;
- a user mention `@name` or a hashtag `#tag`;
- the clitics `n't`, `'s`, `'m`, `'d`, `'re`, `'ve`, `'ll` split from the word before them (`don't` -> `do`, `n't`);
- a number with inner `.`, `,` or `:` (`3.5`, `1,000`, `10:30`);
- a word: letters, digits, `_` and combining marks, with inner hyphens (`Spider-Man`);
- a run of one repeated punctuation or symbol character (`...`, `!!`), else any single other character (an emoji).

Whitespace is never part of a token, so text joined from given tokens with spaces (a CoNLL file) splits into those
tokens or finer ones, and an entity of given tokens always starts and ends on a token boundary. Offsets are Python
string indices: Unicode code points, not bytes or UTF-16 units.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_WORD = r"[\w\u0300-\u036f\u200c\u200d]"
TOKEN = re.compile(
    r"(?:https?://|www\.)\S+"
    r"|[@#]" + _WORD + "+"
    r"|" + _WORD + r"+?(?=n['’]t\b)"
    r"|n['’]t\b"
    r"|['’](?:s|m|d|re|ve|ll)\b"
    r"|\d+(?:[.,:]\d+)+"
    r"|" + _WORD + r"+(?:-" + _WORD + r"+)*"
    r"|([^\w\s])\1*",
    re.IGNORECASE,
)

#: an entity: (start, end, label), `text[start:end]` its characters
Span = tuple[int, int, str]
#: an entity found by a model, with its score (the mean marginal probability of its tokens' tags)
Found = tuple[int, int, str, float]
OUTSIDE = "O"


@dataclass(frozen=True)
class Entities:
    """A sentence's text and its entities, sorted by start: a training target (one object, not a sequence, so an
    array of targets holds one per sentence)."""

    text: str
    spans: tuple[Span, ...]


def tokenize(text: str, cuts: Iterable[int] = ()) -> list[tuple[int, int]]:
    """The (start, end) offsets of `text`'s tokens; a token with a position of `cuts` strictly inside is split there
    (training splits at entity boundaries: the model then learns them even where the tokenizer would not cut)."""
    spans = [match.span() for match in TOKEN.finditer(text)]
    inside = sorted(set(cuts))
    if not inside:
        return spans
    out = []
    for start, end in spans:
        for cut in inside:
            if start < cut < end:
                out.append((start, cut))
                start = cut
        out.append((start, end))
    return out


def boundaries(spans: Iterable[Span]) -> list[int]:
    return [point for start, end, _ in spans for point in (start, end)]


def tags_of(tokens: Sequence[tuple[int, int]], spans: Sequence[Span]) -> list[str]:
    """BIO tags of `tokens` for the entity `spans` (a token is in an entity when it lies inside the span)."""
    tags = [OUTSIDE] * len(tokens)
    for start, end, label in spans:
        first = True
        for i, (a, b) in enumerate(tokens):
            if a >= start and b <= end:
                tags[i] = ("B-" if first else "I-") + label
                first = False
    return tags


def spans_of(
    tokens: Sequence[tuple[int, int]], tags: Sequence[str], scores: Sequence[float] | None = None
) -> list[Found]:
    """Entities of predicted BIO tags (an I- tag that does not continue an entity of its type starts one, as
    conlleval reads it), each scored with the mean of its tokens' `scores` (1.0 without)."""
    found: list[Found] = []
    open_at, label = -1, ""

    def close(end: int) -> None:
        if open_at >= 0:
            parts = scores[open_at:end] if scores is not None else [1.0]
            found.append((tokens[open_at][0], tokens[end - 1][1], label, float(sum(parts) / len(parts))))

    for i, tag in enumerate(tags):
        prefix, kind = tag[:2], tag[2:]
        if prefix == "I-" and open_at >= 0 and kind == label:
            continue
        close(i)
        open_at, label = (i, kind) if prefix in ("B-", "I-") else (-1, "")
    close(len(tags))
    return found
