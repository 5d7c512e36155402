"""`deepatlas runs list|show|delete`."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from deepatlas.cli._common import JsonOpt, cli_errors, console, print_json
from deepatlas.db.graph import Graph
from deepatlas.db.runs import delete_run, list_runs, resolve_run

app = typer.Typer(help="List, inspect and delete the runs stored in the graph.", no_args_is_help=True)



@app.command("list")
@cli_errors
def list_cmd(
    all_: Annotated[bool, typer.Option("--all", help="Include running, failed and replaced runs.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Runs, newest first (complete ones unless --all), and ingests that were stopped and can be
    continued with --resume (with --json: under --all, as entries of status "resumable")."""
    from deepatlas.ingest.resume import resumable_runs

    with Graph() as g:
        runs = list_runs(g, include_incomplete=all_)
    partial = resumable_runs()
    if json_out:
        extra = [{"name": p["run"], "status": "resumable", "stage": p.get("stage"), "images_done": p.get("images_done"),
                  "images": p.get("images"), "updated": p.get("updated")} for p in partial] if all_ else []
        print_json([*runs, *extra])
        return
    table = Table(title="runs")
    table.add_column("name", no_wrap=True, overflow="ignore", min_width=max((len(r.name) for r in runs), default=4))
    for col in ("status", "data", "images", "accuracy", "created"):
        table.add_column(col, overflow="fold")
    for r in runs:
        table.add_row(r.name, r.status, f"{r.dataset}/{r.split}", str(r.n_samples),
                      f"{r.accuracy:.2%}" if r.accuracy is not None else "-", (r.created_at or "")[:19])
    console.print(table if runs else "no runs yet: deepatlas ingest")
    if partial:
        stopped = Table(title="stopped ingests: run the same `deepatlas ingest` with --resume to continue (--restart discards)")
        for col in ("name", "stage", "images done", "saved"):
            stopped.add_column(col, overflow="fold")
        for p in partial:
            done, total = p.get("images_done"), p.get("images")
            stopped.add_row(str(p.get("run")), str(p.get("stage")), f"{done:,} of {total:,}" if done is not None and total else "-",
                            time.strftime("%Y-%m-%d %H:%M", time.localtime(float(p.get("updated", 0)))))
        console.print(stopped)


@app.command()
@cli_errors
def show(
    run: Annotated[str | None, typer.Argument(help="Run name. Default: the run last used here, else the latest.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """One run's parameters, counts and accuracy."""
    with Graph() as g:
        info = resolve_run(g, run)
    if json_out:
        print_json(info)
        return
    console.print(f"[bold]{info.name}[/]  ({info.status}, key {info.key})")
    console.print(f"  data      {info.dataset}/{info.split}, {info.n_samples} images, accuracy {info.accuracy:.2%}")
    console.print(f"  model     {info.model}")
    console.print(f"  params    {info.params}")
    console.print(f"  counts    {info.counts}")
    console.print(f"  completed {info.completed_at}")


@app.command()
@cli_errors
def delete(
    run: Annotated[str, typer.Argument(help="Run name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Delete every node and edge of a run."""
    if not yes and not typer.confirm(f"delete run {run}?"):
        raise typer.Exit(1)
    with Graph() as g:
        n = delete_run(g, run)
    if json_out:
        print_json({"deleted_run": run, "nodes": n})
    else:
        console.print(f"deleted run {run} ({n:,} nodes)")
