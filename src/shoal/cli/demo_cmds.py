"""`shoal demo`: set up, train, promote, serve and retrain a demo fleet live (README's main job)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from shoal.cli.common import console
from shoal.cli.pipeline_cmds import eval_pipeline
from shoal.cli.train_cmds import run_training


def demo(
    workspace: Annotated[
        Path, typer.Option("--workspace", "-w", help="Folder for the demo workspace.", file_okay=False)
    ] = Path("shoal-demo"),
    port: Annotated[int, typer.Option(help="Port of the demo server (127.0.0.1).")] = 8765,
    reset: Annotated[bool, typer.Option("--reset", help="Delete the demo workspace first.")] = False,
    exit_after_retrain: Annotated[
        bool, typer.Option("--exit-after-retrain", help="Stop once the live retrain is served (for scripts and CI).")
    ] = False,
    retrain_timeout: Annotated[float, typer.Option(help="Seconds to wait for the live retrain.")] = 300,
) -> None:
    """Train, evaluate and promote a demo fleet (SMS spam, Banking77, TweetEval emotion) from data shipped
    with shoal, serve it with a spam -> intent pipeline judged end to end, then drop new data into an inbox and
    watch a gated promotion go live.
    Ctrl-C stops everything."""
    from shoal.demo import Demo

    started = time.perf_counter()
    runner = Demo(workspace.resolve(), port, console)
    try:
        ws = runner.prepare(reset=reset)
        reports = run_training(ws, list(ws.fleet.models))
        if any(r.error for r in reports):
            raise typer.Exit(1)
        runner.start("serve", "--host", "127.0.0.1", "--port", str(port))
        runner.start("worker")
        runner.wait_ready()
        runner.print_tour()
        eval_pipeline(ws, "inbox", None, as_json=False)
        console.print(f"ready after {time.perf_counter() - started:.0f} s")
        served = runner.live_retrain(ws, retrain_timeout)
        if exit_after_retrain:
            console.print(f"demo finished in {time.perf_counter() - started:.0f} s")
            if not served:
                raise typer.Exit(1)
            return
        console.print("[bold]the server and the worker keep running; press Ctrl-C to stop[/bold]")
        while all(p.poll() is None for p in runner.processes):
            time.sleep(1)
        raise typer.Exit(1)
    except KeyboardInterrupt:
        console.print("stopping ...")
    finally:
        runner.stop()


def register(app: typer.Typer) -> None:
    app.command()(demo)
