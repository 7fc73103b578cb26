"""What a text must be to be stored: valid UTF-8 — no lone surrogate, which a JSON `\\ud800` escape or a file name
can carry into a Python string — and no NUL, which PostgreSQL's text cannot hold. Readers check column names with
it, the task's column types every text cell (`shoal.tasks.columns`), and messages that quote a user's value are
made printable."""

from __future__ import annotations


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored (None: it can)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return (
            f"a lone surrogate (U+{ord(text[error.start]):04X}) at character {error.start + 1} is not valid Unicode "
            "(a JSON \\ud800-style escape without its pair); send the text as UTF-8"
        )
    if "\x00" in text:
        return f"a NUL character (U+0000) at character {text.index(chr(0)) + 1}; remove it"
    return None


def printable(text: str) -> str:
    """`text` as valid UTF-8: a lone surrogate is shown escaped, so a message that quotes a user's value can always
    be printed, written to a file or sent as JSON."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
