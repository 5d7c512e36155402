"""`deepatlas runs list|show|delete`."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from deepatlas.cli._common import JsonOpt, cli_errors, console, print_json
from deepatlas.db.graph import Graph
from deepatlas.db.runs import correlation_name, delete_run, list_runs, resolve_run

app = typer.Typer(help="List, inspect and delete the runs stored in the graph.", no_args_is_help=True)



def short_data(spec: str | None) -> str:
    """A data spec as a table cell: ``imagefolder:/long/path/photos`` -> ``imagefolder:photos``."""
    if not spec:
        return "-"
    kind, sep, rest = spec.partition(":")
    return f"{kind}:{rest.rstrip('/').rsplit('/', 1)[-1]}" if sep and "/" in rest else spec


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
    table = Table(title="runs" if all_ else "complete runs", box=box.SIMPLE_HEAD,
                  caption="full data path: deepatlas runs show NAME", caption_justify="left")
    table.add_column("name", no_wrap=True, overflow="ignore", min_width=max((len(r.name) for r in runs), default=4))
    cells = [(short_data(r.dataset) + "/" + str(r.split), f"{r.n_samples:,}" if r.n_samples is not None else "-",
              f"{r.accuracy:.2%}" if r.accuracy is not None else "-", (r.created_at or "")[:16].replace("T", " "))
             for r in runs]
    if all_:  # without --all every run listed is complete
        table.add_column("status", no_wrap=True, min_width=max((len(r.status) for r in runs), default=6))
    fixed = [max((len(r.name) for r in runs), default=4), *([max(len(r.status) for r in runs)] if all_ and runs else [])]
    fixed += [max([len(col), *(len(c[i]) for c in cells)]) for i, col in enumerate(("images", "accuracy", "created"), start=1)]
    room = console.width - sum(fixed) - 3 * (len(fixed) + 1) - 4  # the data column gives way, cut at its end
    if room < 12:  # narrow: the day the run was made (MM-DD), not the minute
        cells = [(*c[:3], c[3][5:10]) for c in cells]
        room += 9
    room = max(room, 8)
    table.add_column("data", no_wrap=True, max_width=room)
    cells = [(c[0] if len(c[0]) <= room else c[0][: room - 1] + "…", c[1], c[2], c[3]) for c in cells]
    for i, col in enumerate(("images", "accuracy", "created"), start=1):
        table.add_column(col, justify="left" if col == "created" else "right", no_wrap=True,
                         min_width=max([len(col), *(len(c[i]) for c in cells)]))
    for r, c in zip(runs, cells, strict=True):
        table.add_row(r.name, *([r.status] if all_ else []), *c)
    console.print(table if runs else "no runs yet: deepatlas ingest")
    if partial:
        stopped = Table(title="stopped ingests: run the same `deepatlas ingest` with --resume to continue (--restart discards)")
        for col in ("name", "stage", "images done", "saved"):
            stopped.add_column(col, no_wrap=True, overflow="ignore" if col == "name" else "ellipsis")
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
    console.print(f"  edges     co-activation by {correlation_name(info.correlation)}")
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
