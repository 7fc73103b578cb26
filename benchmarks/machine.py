"""What a benchmark ran on, printed beside its figures: the code's commit, the CPU, the memory and the load average.

Every benchmark calls `print_machine()` before it measures and `print_command(started)` at the end, so a pasted
table always carries the command, the commit and the machine it came from.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path


def code_commit() -> str:
    """The commit of the `shoal` package this process imports, and whether its checkout has uncommitted changes."""
    spec = importlib.util.find_spec("shoal")
    if spec is None or spec.origin is None:
        return "shoal not importable"
    folder = Path(spec.origin).parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout

    try:
        head = git("rev-parse", "--short=12", "HEAD").strip()
        dirty = git("status", "--porcelain", "--untracked-files=no").strip()
    except (OSError, subprocess.CalledProcessError):
        return f"shoal from {folder} (not a git checkout)"
    return f"commit {head}{' + UNCOMMITTED CHANGES' if dirty else ''} (shoal from {folder})"


#: the CPU features that change the int8 and fp32 encoders' speed (see RESULTS.md, int8 vs fp32)
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_model() -> str:
    """The CPU's model name and which of `FLAGS` it has."""
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "unknown CPU")
    flags = next((set(line.split(":", 1)[1].split()) for line in info if line.startswith("flags")), set())
    return f"{model} ({' '.join(f for f in FLAGS if f in flags) or 'none of ' + '/'.join(FLAGS)})"


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def print_machine() -> float:
    """Print the code's commit, the machine and its load now; return the start time for `print_command`."""
    print(
        f"code: {code_commit()}\n"
        f"machine: {cpu_model()}, {os.cpu_count()} cores, {memory_gib():.1f} GiB; at the start: {load_average()}",
        flush=True,
    )
    return time.perf_counter()


def print_command(started: float) -> None:
    """How to reproduce a table: the command (with PYTHONPATH and SHOAL_* variables), the date, the load at the end and
    the wall time."""
    wall = time.perf_counter() - started
    env = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k == "PYTHONPATH" or k.startswith("SHOAL_")]
    command = shlex.join([*env, sys.executable, *sys.argv])
    print(
        f"\nCommand: `{command}` ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"{wall:.0f} s wall; at the end: {load_average()})",
        flush=True,
    )


def shoal(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m shoal ARGS` in this interpreter; exits the benchmark with its output when it fails."""
    done = subprocess.run([sys.executable, "-m", "shoal", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"shoal {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done
