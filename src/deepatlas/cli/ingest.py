"""`deepatlas ingest`: model + data -> a Run in Neo4j."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import nullcontext
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from deepatlas.cli._common import (
    DataDirOpt,
    DataSpecOpt,
    DeviceOpt,
    JsonOpt,
    check_correlation,
    cli_errors,
    console,
    model_flags,
    parse_grid,
    print_json,
    progress_bars,
)
from deepatlas.workspace import DataSource, ModelSource, Workspace

if TYPE_CHECKING:
    from deepatlas.workflows.build import IngestReport


@cli_errors
@model_flags()
def ingest(
    model: ModelSource = None,  # type: ignore[assignment]  # becomes the model flags (model_flags)
    data: DataSpecOpt = "fashion-mnist",
    split: Annotated[str, typer.Option(help="train or test (val for ImageNet; all: an image folder, npz or shards without "
                                       "splits).")] = "test",
    data_dir: DataDirOpt = None,
    layers: Annotated[str | None, typer.Option(help="Comma-separated sites or modules to capture. Default: the model's blocks "
                                               "(ResNet, DenseNet, EfficientNet ... blocks; ViT encoder blocks) and the "
                                               "activation after each conv/dense layer outside them.")] = None,
    limit: Annotated[int | None, typer.Option(min=2, help="Only the first N images (the rest are never read).")] = None,
    run: Annotated[str | None, typer.Option(help="Run name. Default: {weights file}-{data}-{split}. A run of that name from the "
                                            "same weights and data is replaced; from others only with --replace.")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a run of the same name from other weights or data.")] = False,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Images per forward pass. Default: from the model's size "
                                                   "(the forward pass gets about 1 GB; on a GPU half its free memory).")] = None,
    workers: Annotated[int | None, typer.Option(min=0, help="DataLoader processes decoding images. Default: CPUs - 1 (at most "
                                                "8) for image files and shards, none for arrays already in memory.")] = None,
    device: DeviceOpt = "auto",
    memory_mb: Annotated[float, typer.Option(min=64.0, help="Memory for everything but the model's forward pass: co-moments "
                                             "(a quarter), node values of a blockwise pass (half), selection and edges.")] = 2048.0,
    min_r: Annotated[float, typer.Option(min=0.0, max=1.0, help="Neuron-neuron pairs with |r| at least this are picked "
                                         "(above the noise floor, within --max-degree).")] = 0.5,
    top_k: Annotated[int, typer.Option(min=0, help="Each node also picks its k strongest neuron-neuron pairs above the "
                                       "noise floor.")] = 8,
    max_degree: Annotated[int, typer.Option(min=1, help="At most this many neuron-neuron edges per node.")] = 32,
    max_edges: Annotated[int, typer.Option(min=1, help="At most this many neuron-neuron edges per run (the strongest).")] = 1_000_000,
    alpha: Annotated[float, typer.Option(min=0.0, max=0.5, help="Noise floor: a pair must have |r| above what chance gives "
                                         "with this family-wise probability at this many images (0: no floor).")] = 0.05,
    class_top_k: Annotated[int | None, typer.Option(min=1, help="Units per class in COACTIVATES, GRADIENT and INFLUENCES. "
                                                    "Default: all while units x classes <= 250,000.")] = None,
    pixel_top_k: Annotated[int, typer.Option(min=0, help="Pixel edges kept per neuron (the full pixel vector is always stored).")] = 16,
    class_values: Annotated[str, typer.Option(help="Class node values: probs (softmax) or logits.")] = "probs",
    correlation: Annotated[str, typer.Option(metavar="KIND", help="Edge weight of COACTIVATES and pixel edges: pearson "
                                             "(the paper's r) or spearman (rho: rank order only, robust to a few huge "
                                             "activations; one more pass over the data, exact up to 2,048 images, the "
                                             "summary gives the error bound beyond).")] = "pearson",
    edges: Annotated[str | None, typer.Option(help="Edges to write: any of coactivation,influence,gradient. Default: all "
                                              "three (INFLUENCES left out, with the reason, where the influence rules "
                                              "do not cover the model, e.g. a ViT's attention).")] = None,
    attribution_per_class: Annotated[int, typer.Option(min=1, help="Images per class averaged for INFLUENCES/GRADIENT edges.")] = 100,
    between_samples: Annotated[int | None, typer.Option(min=0, help="Images averaged for neuron->neuron INFLUENCES. Default: 200 "
                                                        "when that takes at most 1,000 backward sweeps, else skipped (the "
                                                        "summary says so); 0 skips them.")] = None,
    influence_top_k: Annotated[int, typer.Option(min=0, help="Neuron->neuron INFLUENCES kept per upper unit (its strongest "
                                                 "lower units; 0: all pairs, the paper's full matrix; the summary says "
                                                 "what share of the influence the kept edges carry).")] = 32,
    max_matrix_mb: Annotated[float | None, typer.Option(min=0.001, help="Override the co-moments' share of --memory-mb; above "
                                                        "it, co-activation goes blockwise.")] = None,
    pixel_grid: Annotated[str, typer.Option(help="Pixel nodes: auto (every pixel up to 64x64, else a 32x32 grid of "
                                            "region means per channel), off, or ROWSxCOLS.")] = "auto",
    amp: Annotated[bool, typer.Option("--amp", help="Mixed precision for the forward pass (float16 on CUDA, bfloat16 on "
                                      "a CPU); statistics stay in float64.")] = False,
    bulk: Annotated[bool, typer.Option("--bulk", help="Import with neo4j-admin (fast; only into an empty local database).")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a killed ingest of this run from its last checkpoint "
                                         "($DEEPATLAS_HOME/resume; saved every minute).")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Discard a killed ingest's checkpoint and start over.")] = False,
    nproc: Annotated[int | None, typer.Option(min=1, help="Run as N processes on this machine through torchrun (one per "
                                              "GPU; gloo on CPUs). Many machines: torchrun --nnodes ... -m deepatlas ingest.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the model over a data set and write its co-activation graph to Neo4j.

    Nodes: every captured unit (conv filters averaged over positions), each class, each input
    pixel. Edges: Pearson r, or Spearman's rho with --correlation spearman (COACTIVATES; bounded: a noise floor for the number of images,
    per-node and per-run caps), influential scores (INFLUENCES), prediction gradients
    (GRADIENT) and the confusion matrix (CONFUSED_WITH). Images stream through DataLoader
    workers; memory does not grow with their number. The run becomes visible only once every
    row is in.

    Example: deepatlas ingest --model fashion-cnn.pt --split test --limit 2000

    Your own model: deepatlas ingest --model torchvision:resnet18 --num-classes 3 --weights w.safetensors
    --data imagefolder:photos --split all

    A big data set on 8 GPUs: torchrun --nproc-per-node 8 -m deepatlas -- ingest --model torchvision:resnet50
    --weights w.safetensors --data imagenet:/data/imagenet --split val (the "--" keeps torchrun from reading
    deepatlas's options as its own)
    """
    check_correlation(correlation)
    if nproc is not None and nproc > 1:
        _launch(nproc)
        return
    from deepatlas.ingest.pairs import SparsifyParams
    from deepatlas.workflows.build import ingest as run_ingest

    layer_list = [name.strip() for name in layers.split(",") if name.strip()] if layers else None
    grid = parse_grid(pixel_grid)
    sparsify = SparsifyParams(min_abs_r=min_r, top_k=top_k, max_degree=max_degree, max_edges=max_edges,
                              alpha=alpha or None, class_top_k=class_top_k, pixel_top_k=pixel_top_k,
                              influence_top_k=influence_top_k)
    edge_list = [e.strip() for e in edges.split(",") if e.strip()] if edges is not None else None
    ws = Workspace(run=run, model=model, data=DataSource(data, split, data_dir, limit), device=device)
    main = os.environ.get("RANK", "0") == "0"
    with console.status("loading the model", spinner="dots") if main and not json_out else nullcontext():
        ws.checkpoint()  # a bad model fails before the server is started or any bar is drawn
    with ws, progress_bars(main and not json_out) as ws.progress:
        report = run_ingest(
            ws, layers=layer_list, batch_size=batch_size, sparsify=sparsify, class_values=class_values, edges=edge_list,
            correlation=correlation,
            attribution_per_class=attribution_per_class, between_samples=between_samples, memory_mb=memory_mb,
            max_matrix_mb=max_matrix_mb, bulk=bulk, pixel_grid=grid, amp=amp, replace=replace, workers=workers,
            resume=resume, restart=restart,
        )
    _leave_process_group()
    if not main:
        return
    if json_out:
        print_json(report.to_json())
        return
    _summary(report)


def _leave_process_group() -> None:
    """A torchrun process leaves the process group before it exits (no-op for one process)."""
    import sys as _sys

    torch = _sys.modules.get("torch")
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _launch(nproc: int) -> None:
    """Run this very command as ``nproc`` processes under torchrun (``--nproc`` removed)."""
    args = sys.argv[1:]
    cleaned: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        cleaned.append(a)
    # "--" ends torchrun's own options: it would read our --run as an abbreviation of its --run-path
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "deepatlas",
           "--", *cleaned]
    code = subprocess.call(cmd)
    if code:
        raise typer.Exit(code)


def _summary(report: IngestReport) -> None:
    title = (f"run {report.run.name}  ({report.run.n_samples:,} images, accuracy {report.accuracy:.2%}, {report.device}"
             + (f", {report.processes} processes" if report.processes > 1 else "") + (", resumed" if report.resumed else "") + ")")
    table = Table(title=title)
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, n in report.nodes.items():
        table.add_row(f":{label}", f"{n:,}")
    for rel, n in report.edges.items():
        table.add_row(f"[:{rel}]", f"{n:,}")
    console.print(table)
    stages = Table(title="stages")
    stages.add_column("stage")
    stages.add_column("time", justify="right")
    stages.add_column("peak memory", justify="right")
    names = list(dict.fromkeys([*report.seconds, *report.memory_mb]))
    for stage in names:
        sec = report.seconds.get(stage)
        mem = report.memory_mb.get(stage)
        stages.add_row(stage, "" if sec is None else f"{sec:.2f} s", "" if mem is None else f"{mem:,.0f} MB")
    console.print(stages)
    p = report.pairs
    if p.get("correlation") == "spearman":
        bound = p["rank_error_bound"]
        console.print("r is Spearman's rho: " + ("exact (every image's value ranked)" if bound == 0 else
                      f"ranked through {p['rank_bins']:,} bins per node, each rho within {bound:.2g} of the exact one"),
                      highlight=False)
    if "tested" in p:
        console.print(
            f"neuron-neuron pairs: {p['tested']:,} tested, {p['above_floor']:,} above the noise floor |r| > {p['floor']:.3f} "
            f"({report.run.n_samples:,} images), {p['above_min_r']:,} of those with |r| >= min-r, {p['picked']:,} picked, "
            f"{p['after_degree_cap']:,} within the degree cap, {p['kept']:,} stored; each class keeps {p['class_top_k']:,} units",
            highlight=False)
    between = report.attribution.get("influence_between", {})
    if between.get("pairs"):
        console.print(f"neuron->neuron INFLUENCES: {between['stored']:,} of {between['pairs']:,} pairs stored, carrying "
                      f"{between['share_of_influence_kept']:.0%} of the total |influence| (--influence-top-k 0 keeps all)",
                      highlight=False)
    for note in report.skipped:
        console.print(f"[yellow]skipped[/] {note}", highlight=False)
    for note in report.warnings:
        console.print(f"[bold yellow]warning[/] {note}", highlight=False)
    if report.default_run not in (None, report.run.name):
        console.print(f"commands without --run keep using run {report.default_run} (the same model over more of "
                      f"this data); pass --run {report.run.name} for this one",
                      highlight=False)
    example = report.class_names[0] if report.class_names else "CLASS"
    console.print(f"next: deepatlas query drivers --class {example!r} --run {report.run.name}", highlight=False, soft_wrap=True)
