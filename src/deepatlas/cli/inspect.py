"""`deepatlas inspect`: a model's layers, which methods run on it, and what an ingest would cost."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Annotated

import typer
from rich.table import Table

from deepatlas.cli._common import (
    JsonOpt,
    check_correlation,
    cli_errors,
    console,
    model_flags,
    parse_grid,
    print_json,
)
from deepatlas.workspace import ModelSource, Workspace


@cli_errors
@model_flags()
def inspect(
    model: ModelSource = None,  # type: ignore[assignment]  # becomes the model flags (model_flags)
    images: Annotated[int, typer.Option(min=2, help="Images the plan assumes an ingest reads.")] = 10_000,
    memory_mb: Annotated[float, typer.Option(min=64.0, help="As for ingest: memory for everything but the forward pass.")] = 2048.0,
    max_matrix_mb: Annotated[float | None, typer.Option(min=0.001, help="As for ingest: the co-moments' share.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="As for ingest (default: from the model's size).")] = None,
    pixel_grid: Annotated[str, typer.Option(help="As for ingest: auto, off or ROWSxCOLS.")] = "auto",
    min_r: Annotated[float, typer.Option(min=0.0, max=1.0, help="As for ingest.")] = 0.5,
    top_k: Annotated[int, typer.Option(min=0, help="As for ingest.")] = 8,
    correlation: Annotated[str, typer.Option(metavar="KIND", help="As for ingest: pearson, or spearman (plans its "
                                                                  "rank pass and sketches).")] = "pearson",
    all_layers: Annotated[bool, typer.Option("--all", help="List every layer inside the blocks too, grouped by block.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """One dry forward pass: the model's blocks and layers, the default capture set, which
    methods (co-activation, influence, gradient, knockout, activate, switch gates) work on this
    model and why not where one does not, and what an ingest would take stage by stage (peak
    memory, time, edges), said plainly when it would not fit.

    Example: deepatlas inspect --model my.pt --images 2000 --json

    Your own model: deepatlas inspect --model torchvision:resnet50 --num-classes 10 --input-size 3x224x224
    """
    from deepatlas.ingest.pairs import SparsifyParams
    from deepatlas.workflows.inspect import inspect as run_inspect

    check_correlation(correlation)
    grid = parse_grid(pixel_grid)
    with console.status("loading the model", spinner="dots") if not json_out else nullcontext():
        rep = run_inspect(Workspace(model=model), images=images, memory_mb=memory_mb, max_matrix_mb=max_matrix_mb,
                          pixel_grid=grid, sparsify=SparsifyParams(min_abs_r=min_r, top_k=top_k), batch_size=batch_size,
                          correlation=correlation)
    if json_out:
        print_json(rep.to_json())
        return
    table = Table(title=f"{rep.model}: input {'x'.join(map(str, rep.input_shape))}, {rep.classes} classes")
    for col in ("layer", "type", "output per image", "units", "default", "inside"):
        table.add_column(col, overflow="fold")
    inside: dict[str, int] = {}
    for row in rep.layers:
        if row.block is not None and row.name != row.block and row.units is not None:
            inside[row.block] = inside.get(row.block, 0) + 1
    for row in rep.layers:
        in_block = row.block is not None and row.name != row.block
        if (row.units is None and not all_layers) or (in_block and not all_layers):
            continue
        name = f"  {row.name}" if in_block else row.name
        more = f"{inside[row.name]} layers" if row.name == row.block and row.name in inside else ""
        per_image = "x".join(map(str, row.shape[1:])) or "-"  # shape[0] is the dry pass's batch
        table.add_row(name, row.type, per_image, f"{row.units} {row.kind}" if row.units else "-",
                      "yes" if row.default else "", more)
    console.print(table)
    if inside and not all_layers:
        console.print("blocks are captured whole; --all lists the layers inside them (name any with --layers)", style="dim")
    for method, reason in rep.methods.items():
        console.print(f"{method:<13} " + ("[green]works[/]" if reason is None else f"[red]no[/]: {reason}"), highlight=False)
    est = rep.estimate
    if est is None:
        return
    console.print(
        f"ingest of {est.images:,} images: {est.units:,} units + {est.classes} classes, {est.pixels:,} pixel nodes "
        f"({'x'.join(map(str, est.pixel_grid))}), batches of {est.batch_size}; co-moments {est.comoment_mb:,.1f} MB in "
        f"{est.passes} pass(es), pixel statistics {est.pixel_mb:,.1f} MB"
        + (f"; Spearman: rank sketches of {est.rank_bins:,} edges per unit and pixel, and a rank pass"
           if est.correlation == "spearman" else ""), highlight=False)
    plan = Table(title=f"plan: peak about {est.peak_mb:,.0f} MB ({est.baseline_mb:,.0f} MB with the model loaded; "
                       f"{est.available_mb:,.0f} MB free)")
    plan.add_column("stage")
    plan.add_column("memory above baseline", justify="right")
    plan.add_column("time", justify="right")
    for stage in dict.fromkeys([*est.memory_mb, *est.seconds]):
        mem, sec = est.memory_mb.get(stage), est.seconds.get(stage)
        plan.add_row(stage, "" if mem is None else f"{mem:,.0f} MB", "" if sec is None else f"{sec:,.1f} s")
    console.print(plan)
    console.print("edges at most: " + ", ".join(f"{n:,} {rel}" for rel, n in est.edges_max.items())
                  + ("" if est.between else " (neuron->neuron INFLUENCES skipped by default: too many backward sweeps)"),
                  highlight=False)
    if est.problem:
        console.print(f"[red]an ingest with these settings would stop:[/] {est.problem}", highlight=False)
