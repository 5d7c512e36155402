"""`deepatlas inspect`: a model's layers, which methods run on it, and what an ingest would cost."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from deepatlas.cli._common import JsonOpt, cli_errors, console, model_flags, parse_grid, print_json
from deepatlas.workspace import ModelSource, Workspace


@cli_errors
@model_flags()
def inspect(
    model: ModelSource = None,  # type: ignore[assignment]  # becomes the model flags (model_flags)
    images: Annotated[int, typer.Option(min=2, help="Images the estimate assumes an ingest reads.")] = 10_000,
    max_matrix_mb: Annotated[float, typer.Option(min=0.001, help="As for ingest: memory for the unit x unit co-moments.")] = 512.0,
    pixel_grid: Annotated[str, typer.Option(help="As for ingest: auto, off or ROWSxCOLS.")] = "auto",
    min_r: Annotated[float, typer.Option(min=0.0, max=1.0, help="As for ingest.")] = 0.5,
    top_k: Annotated[int, typer.Option(min=0, help="As for ingest.")] = 8,
    all_layers: Annotated[bool, typer.Option("--all", help="List every layer, not only those with units.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """One dry forward pass: every capturable layer, the default capture set, which methods
    (co-activation, influence, gradient, knockout, activate, switch gates) work on this model
    and why not where one does not, and the memory and edges an ingest would take.

    Example: deepatlas inspect --model my.pt --images 2000 --json

    Your own model: deepatlas inspect --model torchvision:resnet50 --num-classes 10 --weights w.safetensors
    """
    from deepatlas.ingest.pairs import SparsifyParams
    from deepatlas.workflows.inspect import inspect as run_inspect

    grid = parse_grid(pixel_grid)
    rep = run_inspect(Workspace(model=model), images=images, max_matrix_mb=max_matrix_mb, pixel_grid=grid,
                      sparsify=SparsifyParams(min_abs_r=min_r, top_k=top_k))
    if json_out:
        print_json(rep.to_json())
        return
    table = Table(title=f"{rep.model}: input {'x'.join(map(str, rep.input_shape))}, {rep.classes} classes")
    for col in ("layer", "type", "output", "units", "default"):
        table.add_column(col, overflow="fold")
    for row in rep.layers:
        if row.units is None and not all_layers:
            continue
        table.add_row(row.name, row.type, "x".join(map(str, row.shape)), f"{row.units} {row.kind}" if row.units else "-",
                      "yes" if row.default else "")
    console.print(table)
    for method, reason in rep.methods.items():
        console.print(f"{method:<13} " + ("[green]works[/]" if reason is None else f"[red]no[/]: {reason}"), highlight=False)
    est = rep.estimate
    if est is not None:
        console.print(
            f"ingest of {est.images:,} images: {est.units:,} units + {est.classes} classes, "
            f"{est.pixels:,} pixel nodes ({'x'.join(map(str, est.pixel_grid))}); "
            f"co-moments {est.comoment_mb:,.1f} MB in {est.passes} pass(es), pixel statistics {est.pixel_mb:,.1f} MB; "
            f"{est.coactivation_edges_min:,} to {est.coactivation_edges_max:,} co-activation edges "
            f"(data decides how many pass --min-r), {est.pixel_edges:,} pixel edges", highlight=False)
        if est.problem:
            console.print(f"[red]an ingest with these settings would stop:[/] {est.problem}", highlight=False)
