"""A pipeline served (SMS spam -> Banking77 intent on a mixed inbox) vs a client calling the two models one after the
other, and the pipeline's end-to-end accuracy with its CI and per-step figures.

    .venv/bin/python benchmarks/pipeline.py [--workspace WS] [--concurrency 1,64] [--duration 5] [--repeat 3]

The workspace (created and trained on first use: `spam` on the SMS Spam Collection, `intent` on the Banking77 train
split, both `tfidf-logreg`) has the pipeline `inbox`: `spam`, stopping at label spam, then `intent`. Its test file
is held out from both models: the last 20% of the SMS rows (judged on spam) and the Banking77 test split (judged on
spam = ham and on the intent). One `shoal serve` process (`--workers 1`). The same client, `wrk` with one
connection per thread (so a connection's second call follows its first answer) and a Lua script, sends one inbox
text at a time, cycling through the test texts, either to `POST /v1/pipelines/inbox/predict` or to spam's predict and
then, unless spam answered, to intent's predict. Texts/s count texts fully answered (a text with a non-2xx answer,
or whose request got no answer before wrk reconnected, is a failed text, printed, not counted; wrk's socket errors
are printed beside); p50 is per text (both calls for "two calls"), timed in the script with CLOCK_MONOTONIC. Each
figure is the median of `--repeat` interleaved rounds.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from harness import DATA, ROOT, elapsed_seconds, free_port, server, wrk_binary
from machine import load_average, print_command, print_machine

from shoal.data.ingest import ingest_file
from shoal.pipelines.evaluate import evaluate_pipeline
from shoal.registry import PRODUCTION
from shoal.train.trainer import train_models
from shoal.workspace import Workspace

PIPELINE = "/v1/pipelines/inbox/predict"
FLEET = {
    "workspace": {"n_jobs": 2, "evaluation": {"latency_calls": 100, "bootstrap": 1000, "measure_rss": False}},
    "models": {
        "spam": {"task": "text-classification", "metric": "f1:spam", "families": ["tfidf-logreg"]},
        "intent": {"task": "text-classification", "metric": "accuracy", "families": ["tfidf-logreg"]},
    },
    "pipelines": {
        "inbox": {
            "test": "inbox_test.csv",
            "steps": [{"model": "spam", "stop": {"label": ["spam"]}}, {"model": "intent"}],
        }
    },
}


def prepare(root: Path, data: Path) -> Workspace:
    """The workspace with both models trained and the pipeline's test file (built once)."""
    if (root / "shoal.yaml").exists():
        ws = Workspace(root)
        if all(ws.registry.alias(model, PRODUCTION) is not None for model in ("spam", "intent")):
            return ws
    root.mkdir(parents=True, exist_ok=True)
    (root / "shoal.yaml").write_text(yaml.safe_dump(FLEET, sort_keys=False), encoding="utf-8")
    sms = pd.read_csv(data / "sms_spam" / "sms_spam.csv", keep_default_na=False)
    cut = int(len(sms) * 0.8)
    sms.iloc[:cut].to_csv(root / "spam.csv", index=False)
    banking_test = pd.read_csv(data / "banking77" / "test.csv", keep_default_na=False)
    held_out = sms.iloc[cut:]
    pd.concat(
        [
            pd.DataFrame({"text": held_out["text"], "spam": held_out["label"], "intent": ""}),
            pd.DataFrame({"text": banking_test["text"], "spam": "ham", "intent": banking_test["label"]}),
        ]
    ).to_csv(root / "inbox_test.csv", index=False)
    ws = Workspace(root)
    ingest_file(ws, "spam", root / "spam.csv")
    ingest_file(ws, "intent", data / "banking77" / "train.csv", split="train")
    ingest_file(ws, "intent", data / "banking77" / "test.csv", split="test")
    for report in train_models(ws, ["spam", "intent"]):
        if report.error:
            raise SystemExit(f"training {report.model} failed: {report.error}")
    return ws


LUA = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } shoal_timespec;
           int clock_gettime(int, shoal_timespec *); ]]
local clock = ffi.new("shoal_timespec")
local function now()
  ffi.C.clock_gettime(1, clock)
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) * 1e-9
end
MODE = "%(mode)s"
bodies = {
%(bodies)s
}
texts, failed, latencies = 0, 0, {}
local counter, current, began, second, pending = 0, nil, 0, false, false
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
  thread:set("start", #threads * 7919)
  thread:set("verifying", #threads == 1)  -- wrk checks the script by calling request() once in the first thread
end
init = function() counter = start or 0 end
request = function()
  if pending then  -- the last request got no answer (read error, reconnect): that text failed, go on to the next
    failed, second = failed + 1, false
  end
  pending, verifying = not verifying, false
  if second then
    return wrk.format(nil, "/v1/models/intent/predict", nil, current)
  end
  counter = counter + 1
  current = bodies[(counter %% #bodies) + 1]
  began = now()
  return wrk.format(nil, MODE == "pipeline" and "%(pipeline)s" or "/v1/models/spam/predict", nil, current)
end
response = function(status, headers, body)
  pending = false
  if status ~= 200 then
    failed, second = failed + 1, false
  elseif MODE == "two calls" and not second and not string.find(body, '"label":"spam"', 1, true) then
    second = true
  else
    texts, second = texts + 1, false
    latencies[#latencies + 1] = now() - began
  end
end
done = function(summary, latency, requests)
  local all, total, bad = {}, 0, 0
  for _, thread in ipairs(threads) do
    total, bad = total + thread:get("texts"), bad + thread:get("failed")
    for _, value in ipairs(thread:get("latencies")) do all[#all + 1] = value end
  end
  table.sort(all)
  local p50 = #all > 0 and all[math.floor((#all + 1) / 2)] * 1000 or -1
  io.write(string.format("SHOAL texts %%d failed %%d p50_ms %%.3f\n", total, bad, p50))
end
"""


def script(mode: str, texts: list[str], folder: Path) -> Path:
    """A wrk script sending one inbox text per request (to the pipeline) or per one or two calls (spam, then intent
    unless spam). Each wrk thread holds one connection, so a connection's second call follows its first answer."""
    bodies = ",\n".join(f"[==[{json.dumps({'inputs': [t]})}]==]" for t in texts)
    path = folder / f"pipeline-{mode.replace(' ', '-')}.lua"
    path.write_text(LUA % {"mode": mode, "bodies": bodies, "pipeline": PIPELINE}, encoding="utf-8")
    return path


def measure(url: str, lua: Path, concurrency: int, seconds: int) -> dict[str, float]:
    """Texts fully answered per second (failed texts excluded), p50 per text (ms), failed texts (a non-2xx answer,
    or a request the script saw no answer to) and wrk's socket errors (a connection that never sent a text is
    counted only there; a request past wrk's --timeout is counted there and, if it is answered later, as a text)."""
    command = [
        wrk_binary(),
        f"-t{concurrency}",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(lua),
        url,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    texts, failed, p50 = re.search(r"SHOAL texts (\d+) failed (\d+) p50_ms ([\d.-]+)", out).groups()  # type: ignore[union-attr]
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "texts_per_s": int(texts) / elapsed_seconds(out),
        "p50_ms": float(p50),
        "failed": int(failed),
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=ROOT / "benchmarks" / ".work" / "pipeline")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    begun = print_machine()
    wrk_binary()
    ws = prepare(args.workspace, args.data)
    report = evaluate_pipeline(ws, "inbox")
    end = report["end_to_end"]
    print(f"\ninbox pipeline on {report['n']} held-out texts ({report['versions']}):")
    print(f"  end to end: accuracy {end['accuracy']:.4f} (95% CI {end['ci'][0]:.4f}..{end['ci'][1]:.4f}, n={end['n']})")
    for step, part in report["steps"].items():
        print(
            f"  step {step}: accuracy {part['accuracy']:.4f} (95% CI {part['ci'][0]:.4f}..{part['ci'][1]:.4f}, "
            f"n={part['n']}, skipped {part['skipped']})"
        )
    texts = pd.read_csv(args.workspace / "inbox_test.csv", keep_default_na=False)["text"].tolist()
    levels = [int(c) for c in args.concurrency.split(",")]
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    port = free_port()
    command = [sys.executable, "-m", "shoal", "serve", "-w", str(args.workspace), "--port", str(port), "--workers", "1"]
    with (
        tempfile.TemporaryDirectory(prefix="shoal-pipeline-") as folder,
        server(command, port, path=PIPELINE) as (
            url,
            _pid,
        ),
    ):
        scripts = {mode: script(mode, texts, Path(folder)) for mode in ("pipeline", "two calls")}
        for _ in range(args.repeat):
            for concurrency in levels:
                for mode, lua in scripts.items():
                    measure(url, lua, concurrency, 1)  # warm-up
                    runs.setdefault((mode, concurrency), []).append(measure(url, lua, concurrency, args.duration))
            print(f"  round done ({load_average()})", flush=True)
    print("\n| client | concurrency | texts/s | p50 ms per text | failed texts | socket errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for (mode, concurrency), found in runs.items():
        rate = statistics.median(r["texts_per_s"] for r in found)
        p50 = statistics.median(r["p50_ms"] for r in found)
        failed, errors = sum(r["failed"] for r in found), sum(r["socket_errors"] for r in found)
        print(f"| {mode} | {concurrency} | {rate:,.0f} | {p50:.2f} | {failed:.0f} | {errors:.0f} |")
    print_command(begun)


if __name__ == "__main__":
    main()
