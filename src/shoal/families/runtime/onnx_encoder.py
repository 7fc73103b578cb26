"""Sentence embeddings at run time with ONNX Runtime and `tokenizers` only (no torch): tokenize, run the exported
encoder, L2-normalize. An `OnnxEncoder` lives in a folder as `encoder.onnx` + `tokenizer.json`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np

from shoal.families.runtime.hf_tokenizer import load_tokenizer, pad_batch
from shoal.families.runtime.minilm_source import INSTALL_HINT, MissingExtra
from shoal.families.runtime.normalize import normalize

try:
    import onnxruntime as ort
except ImportError:
    raise MissingExtra(f"onnxruntime is missing; {INSTALL_HINT}") from None

MODEL_FILE = "encoder.onnx"
TOKENIZER_FILE = "tokenizer.json"
#: sentence-transformers' max_seq_length for all-MiniLM-L6-v2
MAX_TOKENS = 256
#: texts per encoder call when embedding many texts: sorted by length, in small groups so padding stays small
#: (8 beats 64 by 1.8x in texts/s for Banking77 on 2 cores: a group of 64 pads every text to the longest)
CHUNK = 8


def _cores() -> int:
    """Cores this process should use: OMP_NUM_THREADS where set (joblib sets 1 in its workers), else its CPUs."""
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return int(limit) if limit.isdigit() and int(limit) > 0 else len(os.sched_getaffinity(0))


@cache
def _pool(pid: int, workers: int) -> ThreadPoolExecutor:
    """One thread pool per process (a forked child gets its own) and size, shared by every encoder."""
    return ThreadPoolExecutor(workers, thread_name_prefix=f"shoal-encoder-{pid}")


def _session(model_path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


class OnnxEncoder:
    """Mean-pooled, normalized MiniLM sentence embeddings from an ONNX graph.

    Many texts are encoded in chunks of `CHUNK` run side by side, one core each, on a one-thread session: the
    graph's many small operators scale poorly across cores within one run (int8 Banking77 on 2 cores: 1,800 vs
    1,200 texts/s). A single chunk (one request) runs on a session that uses every core, for latency.
    """

    def __init__(self, model_path: Path, tokenizer_path: Path) -> None:
        self.model_path, self.tokenizer_path = model_path, tokenizer_path
        self.tokenizer = load_tokenizer(tokenizer_path, MAX_TOKENS)
        self.workers = _cores()
        self.per_chunk = _session(model_path, 1)
        self.per_call = _session(model_path, self.workers) if self.workers > 1 else self.per_chunk
        self.pad_id = self.tokenizer.token_to_id("[PAD]")
        self.dim = int(self.per_chunk.get_outputs()[0].shape[-1])

    def _feed(self, ids: list[list[int]]) -> dict[str, np.ndarray]:
        input_ids, attention_mask = pad_batch(ids, self.pad_id)
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, shape (len(texts), dim), float32."""
        encodings = self.tokenizer.encode_batch(list(texts))
        out = np.zeros((len(encodings), self.dim), dtype=np.float32)
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        chunks = [order[start : start + CHUNK] for start in range(0, len(encodings), CHUNK)]
        feeds = [self._feed([encodings[i].ids for i in rows]) for rows in chunks]
        if len(chunks) == 1 or self.workers == 1:
            parts = [self.per_call.run(None, feed)[0] for feed in feeds]
        else:
            parts = list(_pool(os.getpid(), self.workers).map(lambda feed: self.per_chunk.run(None, feed)[0], feeds))
        for rows, part in zip(chunks, parts, strict=True):
            out[rows] = part
        return normalize(out)

    def save(self, folder: Path) -> None:
        shutil.copyfile(self.model_path, folder / MODEL_FILE)
        shutil.copyfile(self.tokenizer_path, folder / TOKENIZER_FILE)

    def n_parameters(self) -> int:
        import onnx  # only to count weights (profiling), never on the prediction path

        model = onnx.load(str(self.model_path), load_external_data=False)
        return int(sum(np.prod(init.dims) for init in model.graph.initializer))

    @classmethod
    def load(cls, folder: Path) -> OnnxEncoder:
        return cls(folder / MODEL_FILE, folder / TOKENIZER_FILE)
