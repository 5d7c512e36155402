"""`deepatlas ingest`: model + data -> a Run in Neo4j."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from deepatlas.cli._common import (
    DataDirOpt,
    DataSpecOpt,
    DeviceOpt,
    JsonOpt,
    cli_errors,
    console,
    model_flags,
    parse_grid,
    print_json,
    progress_bars,
)
from deepatlas.workspace import DataSource, ModelSource, Workspace


@cli_errors
@model_flags()
def ingest(
    model: ModelSource = None,  # type: ignore[assignment]  # becomes the model flags (model_flags)
    data: DataSpecOpt = "fashion-mnist",
    split: Annotated[str, typer.Option(help="train or test (all: an image folder or npz without splits).")] = "test",
    data_dir: DataDirOpt = None,
    layers: Annotated[str | None, typer.Option(help="Comma-separated module names to capture. Default: every conv/dense layer's activation.")] = None,
    limit: Annotated[int | None, typer.Option(min=2, help="Only the first N images.")] = None,
    run: Annotated[str | None, typer.Option(help="Run name. Default: {weights file}-{data}-{split}. A run of that name from the "
                                            "same weights and data is replaced; from others only with --replace.")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a run of the same name from other weights or data.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 500,
    device: DeviceOpt = "auto",
    min_r: Annotated[float, typer.Option(min=0.0, max=1.0, help="Keep neuron-neuron pairs with |r| at least this.")] = 0.5,
    top_k: Annotated[int, typer.Option(min=0, help="Also keep each node's k strongest neuron-neuron pairs.")] = 8,
    pixel_top_k: Annotated[int, typer.Option(min=0, help="Pixel edges kept per neuron (the full pixel vector is always stored).")] = 16,
    class_values: Annotated[str, typer.Option(help="Class node values: probs (softmax) or logits.")] = "probs",
    edges: Annotated[str, typer.Option(help="Edges to write: any of coactivation,influence,gradient.")] = "coactivation,influence,gradient",
    attribution_per_class: Annotated[int, typer.Option(min=1, help="Images per class averaged for INFLUENCES/GRADIENT edges.")] = 100,
    between_samples: Annotated[int, typer.Option(min=0, help="Images averaged for neuron->neuron INFLUENCES (about one backward pass "
                                                 "per batch and layer pair); 0 skips them (ResNet-18: 1.26M edges).")] = 200,
    influence_top_k: Annotated[int, typer.Option(min=0, help="Keep only each upper unit's k strongest lower units in the "
                                                 "neuron->neuron INFLUENCES (0: all pairs, the default; on ResNet-18 "
                                                 "k=32 keeps 10% of the edges and a third of the influence, see "
                                                 "docs/ARCHITECTURE.md).")] = 0,
    max_matrix_mb: Annotated[float, typer.Option(min=0.001, help="Memory for the unit x unit co-moments; above it, co-activation "
                                                 "goes blockwise, one pass over the data per block of rows.")] = 512.0,
    pixel_grid: Annotated[str, typer.Option(help="Pixel nodes: auto (every pixel up to 64x64, else a 32x32 grid of "
                                            "region means per channel), off, or ROWSxCOLS.")] = "auto",
    amp: Annotated[bool, typer.Option("--amp", help="Mixed precision for the forward pass (float16 on CUDA, bfloat16 on "
                                      "a CPU); statistics stay in float64.")] = False,
    bulk: Annotated[bool, typer.Option("--bulk", help="Import with neo4j-admin (fast; only into an empty local database).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run the model over a data set and write its co-activation graph to Neo4j.

    Nodes: every captured unit (conv filters averaged over positions), each class, each input
    pixel. Edges: Pearson r (COACTIVATES), and the confusion matrix (CONFUSED_WITH). The run
    becomes visible only once every row is in.

    Example: deepatlas ingest --model fashion-cnn.pt --split test --limit 2000

    Your own model: deepatlas ingest --model torchvision:resnet18 --num-classes 3 --weights w.safetensors
    --data imagefolder:photos --split all
    """
    from deepatlas.ingest.pairs import SparsifyParams
    from deepatlas.workflows.build import ingest as run_ingest

    layer_list = [name.strip() for name in layers.split(",") if name.strip()] if layers else None
    grid = parse_grid(pixel_grid)
    ws = Workspace(run=run, model=model, data=DataSource(data, split, data_dir, limit), device=device)
    ws.checkpoint()  # a bad model fails before the server is started or any bar is drawn
    with ws, progress_bars(not json_out) as ws.progress:
        report = run_ingest(
            ws, layers=layer_list, batch_size=batch_size,
            sparsify=SparsifyParams(min_abs_r=min_r, top_k=top_k, pixel_top_k=pixel_top_k, influence_top_k=influence_top_k),
            class_values=class_values, edges=[e.strip() for e in edges.split(",") if e.strip()],
            attribution_per_class=attribution_per_class, between_samples=between_samples,
            max_matrix_mb=max_matrix_mb, bulk=bulk, pixel_grid=grid, amp=amp, replace=replace,
        )
    if json_out:
        print_json(report.to_json())
        return
    table = Table(title=f"run {report.run.name}  ({report.run.n_samples} images, accuracy {report.accuracy:.2%}, {report.device})")
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, n in report.nodes.items():
        table.add_row(f":{label}", f"{n:,}")
    for rel, n in report.edges.items():
        table.add_row(f"[:{rel}]", f"{n:,}")
    for stage, s in report.seconds.items():
        table.add_row(f"time {stage}", f"{s:.2f} s")
    console.print(table)
    console.print(f"next: deepatlas query drivers --class Sandal --run {report.run.name}")
