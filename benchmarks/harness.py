"""What the serving benchmarks share: the Banking77 texts, workspace copies, servers started and stopped with
timeouts, `wrk` runs (non-2xx answers and socket errors counted and excluded from requests/s) and medians.

Traffic goes to 127.0.0.1 only. Every wait has a timeout; a server is stopped with its whole process group.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pandas as pd
import psutil
import yaml

from shoal.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MODEL = "banking77"


def route(model: str = MODEL) -> str:
    return f"/v1/models/{model}/predict"


ROUTE = route()


def arguments(doc: str | None, **integers: int) -> argparse.ArgumentParser:
    """A parser with --workspace, --data, --repeat (default 3) and an integer option per keyword (its default)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=ROOT / "benchmarks" / ".work" / "lifecycle")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; every figure is their median")
    for name, default in integers.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    return parser


def banking77_texts(data: Path = DATA) -> list[str]:
    return pd.read_csv(data / "banking77" / "test.csv", keep_default_na=False)["text"].tolist()


def copy_workspace(source: Path, folder: Path) -> Path:
    """A copy of `source` under `folder` (servers write to their workspace); checks it has a production model."""
    root = folder / "ws"
    shutil.copytree(source.resolve(), root)
    if Workspace(root).registry.alias(MODEL) is None:
        raise SystemExit(f"{source} has no production {MODEL}; run benchmarks/lifecycle.py first")
    return root


def fleet_of(source: Workspace, count: int, folder: Path, *, promote: bool = True) -> Path:
    """A workspace of `count` models m000, m001, ..., each its own copy (own artifact folder) of the source's
    production Banking77 version, promoted unless `promote` is false (then the server has nothing to load)."""
    version = source.registry.version(MODEL, source.registry.alias(MODEL))  # type: ignore[arg-type]
    names = [f"m{i:03d}" for i in range(count)]
    root = folder / f"fleet-{count}{'' if promote else '-unpromoted'}"
    root.mkdir()
    spec = {"task": "text-classification", "families": [version.family]}
    (root / "shoal.yaml").write_text(yaml.safe_dump({"models": dict.fromkeys(names, spec)}))
    ws = Workspace(root)
    for name in names:
        ws.registry.ensure_model(name, "text-classification")
        number = copy_version(source, ws, name)
        if promote:
            ws.registry.set_alias(name, number, actor="benchmark", reason="benchmark fleet")
    ws.close()
    return root


def copy_version(source: Workspace, target: Workspace, name: str, copy: int = 0) -> int:
    """Register a copy (own artifact folder) of the source's production Banking77 version as a new version of
    `name` in `target`; returns its number. Copies with another `copy` number are different versions."""
    version = source.registry.version(MODEL, source.registry.alias(MODEL))  # type: ignore[arg-type]
    staged = target.registry.artifacts.stage()
    shutil.copytree(source.registry.artifacts.open(version.artifact_uri, version.checksum), staged, dirs_exist_ok=True)
    copy, _ = target.registry.register_version(
        name,
        family=version.family,
        # the same params would be the same version
        params={**version.params, "benchmark_copy_of": version.number, **({"benchmark_copy": copy} if copy else {})},
        dataset_version=version.dataset_version,
        code_version=version.code_version,
        metrics=version.metrics,
        staged=staged,
        test_hash=version.test_hash,
        label_error_rate=None,
    )
    return copy.number


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, path: str, deadline: float) -> None:
    """Until `path` answers and /readyz is not 503 (shoal: every model loaded and warmed; peers have no /readyz)."""
    while time.monotonic() < deadline:
        try:
            answered = httpx.post(url + path, json={"inputs": ["warm up"]}, timeout=5).status_code == 200
            if answered and httpx.get(url + "/readyz", timeout=5).status_code != 503:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url}{path} was not ready in time")


@contextmanager
def server(
    command: list[str], port: int, env: dict[str, str] | None = None, *, path: str = ROUTE, timeout: float = 120
) -> Iterator[tuple[str, int]]:
    """Start a server in its own session; yield (url, pid) once `wait_ready`, or at once if `path` is empty.
    On exit the whole process group gets SIGTERM, then it and every descendant SIGKILL after 30 s at most."""
    process = subprocess.Popen(
        command,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if path:
            wait_ready(url, path, time.monotonic() + timeout)
        yield url, process.pid
    finally:
        family = psutil.Process(process.pid).children(recursive=True) if process.poll() is None else []
        os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group (uvicorn workers, Ray's daemons)
        for child in family:  # and of other groups (Ray's workers start their own sessions)
            with suppress(psutil.NoSuchProcess):
                child.kill()
        process.wait(timeout=10)


def process_count(pid: int) -> int:
    """How many processes the server runs: it and all its descendants."""
    return 1 + len(psutil.Process(pid).children(recursive=True))


def lua_script(texts: list[str], folder: Path, paths: list[str] | None = None) -> Path:
    """A wrk script POSTing the texts in turn, one per request, to `paths` in turn (default: the Banking77 route)."""
    bodies = ",\n".join(f"[==[{json.dumps({'inputs': [t]})}]==]" for t in texts)
    routes = ", ".join(f'"{p}"' for p in paths or [ROUTE])
    handle, name = tempfile.mkstemp(suffix=".lua", dir=folder)
    os.close(handle)
    script = Path(name)
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nbodies = {{\n{bodies}\n}}\n'
        f"paths = {{{routes}}}\ncounter = 0\nrequest = function()\n  counter = counter + 1\n"
        "  return wrk.format(nil, paths[(counter % #paths) + 1], nil, bodies[(counter % #bodies) + 1])\nend\n"
    )
    return script


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}[unit]


def elapsed_seconds(out: str) -> float:
    """How long the wrk run whose output is `out` lasted (wrk prints 10.01s, 1.00m, ...)."""
    return _ms(re.search(r"\d+ requests in ([\d.]+\w+),", out).group(1)) / 1e3  # type: ignore[union-attr]


def parse_wrk(out: str) -> dict[str, float]:
    """requests/s of 2xx answers only, p50/p99 (ms, of every answer) and failures (non-2xx + socket errors)."""
    done = re.search(r"(\d+) requests in ", out).group(1)  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = int(non2xx.group(1)) if non2xx else 0
    return {
        "rps": (int(done) - bad) / elapsed_seconds(out),
        "p50": _ms(re.search(r"\s50%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "p99": _ms(re.search(r"\s99%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "failed": float(bad + (sum(map(int, errors.groups())) if errors else 0)),
    }


def wrk_binary() -> str:
    """The `wrk` load generator's path, or exit saying how to install it (before any server or training starts)."""
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit(
            "wrk is not installed: install it (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk)"
        )
    return found


def wrk(
    url: str, script: Path, connections: int, seconds: int, *, warmup: int = 3, pid: int | None = None
) -> dict[str, float]:
    """A `warmup`-second run, then the measured one; see `parse_wrk`. With the server's `pid`, also `cpu_us`: the CPU
    time its process tree spent during the measured run per request answered (any status), in microseconds, which
    a loaded machine changes much less than requests/s."""
    base = [wrk_binary(), f"-t{1 if connections == 1 else 2}", f"-c{connections}", "--latency", "--timeout", "10s"]
    base += ["-s", str(script)]
    if warmup:
        subprocess.run([*base, f"-d{warmup}s", url], capture_output=True, check=True, timeout=warmup + 60)
    before = cpu_seconds(pid) if pid is not None else 0.0
    out = subprocess.run(
        [*base, f"-d{seconds}s", url], capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    result = parse_wrk(out)
    if pid is not None:
        answered = int(re.search(r"(\d+) requests in ", out).group(1))  # type: ignore[union-attr]
        result["cpu_us"] = 1e6 * (cpu_seconds(pid) - before) / max(1, answered)
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants so far."""
    process = psutil.Process(pid)
    total = 0.0
    for one in [process, *process.children(recursive=True)]:
        with suppress(psutil.NoSuchProcess):
            times = one.cpu_times()
            total += times.user + times.system
    return total


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the runs; failures are summed (every failed request counts)."""
    return {k: sum(r[k] for r in runs) if k == "failed" else statistics.median(r[k] for r in runs) for k in runs[0]}
