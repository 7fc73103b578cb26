"""Memory of one `shoal serve` process holding 1, 10 and 50 production models (TF-IDF family).

    .venv/bin/python benchmarks/serve_memory.py [--workspace benchmarks/.work/lifecycle] [--counts 1,10,50]

Each model of the fleet is its own copy of the production Banking77 TF-IDF version (77 classes, word + char
n-grams: the largest TF-IDF model of the lifecycle benchmark), registered under its own name with its own
artifact folder, so nothing is shared between models except the code. The server is started, waits until
/readyz says every model is loaded and warmed, answers one request per model, and its RSS (psutil) is read.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import httpx
import psutil
from harness import MODEL, ROOT, fleet_of, free_port, server
from machine import print_command, print_machine

from shoal.workspace import Workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=ROOT / "benchmarks" / ".work" / "lifecycle")
    parser.add_argument("--counts", default="1,10,50")
    args = parser.parse_args()
    begun = print_machine()
    source = Workspace(args.workspace.resolve())
    if source.registry.alias(MODEL) is None:
        sys.exit(f"{args.workspace} has no production {MODEL}; run benchmarks/lifecycle.py first")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for count in (int(c) for c in args.counts.split(",")):
            root = fleet_of(source, count, Path(folder))
            port = free_port()
            command = [sys.executable, "-m", "shoal", "serve", "-w", str(root), "--port", str(port)]
            with server(command, port, path="/v1/models/m000/predict", timeout=600) as (url, pid):
                for i in range(count):
                    answer = httpx.post(f"{url}/v1/models/m{i:03d}/predict", json={"inputs": ["card arrived?"]})
                    answer.raise_for_status()
                rss = psutil.Process(pid).memory_info().rss / 2**20
            rows.append((count, rss))
            print(f"{count} models: {rss:,.0f} MiB", file=sys.stderr, flush=True)
    base = rows[0][1]
    print("\n| production models | server RSS (MiB) | per extra model (MiB) |")
    print("|---:|---:|---:|")
    for count, rss in rows:
        extra = (rss - base) / (count - rows[0][0]) if count != rows[0][0] else float("nan")
        print(f"| {count} | {rss:,.0f} | {'-' if count == rows[0][0] else f'{extra:.1f}'} |")
    print_command(begun)


if __name__ == "__main__":
    main()
