"""The MiniLM WordPiece tokenizer (`tokenizers`, Rust) configured for shoal's embedders."""

from __future__ import annotations

from pathlib import Path

from shoal.families.minilm_source import INSTALL_HINT, MissingExtra

try:
    from tokenizers import Tokenizer
except ImportError:
    raise MissingExtra(f"tokenizers is missing; {INSTALL_HINT}") from None


def load_tokenizer(path: Path, max_tokens: int, pad: bool) -> Tokenizer:
    """A tokenizer from tokenizer.json, truncating to `max_tokens`, padding to the longest text or not at all."""
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_tokens)
    if pad:
        tokenizer.enable_padding()
    else:
        tokenizer.no_padding()
    return tokenizer
