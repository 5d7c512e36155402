"""`deepatlas demo`: the whole story on a fresh machine."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.panel import Panel
from rich.text import Text

from deepatlas.cli._common import DeviceOpt, cli_errors, console, err, progress_bars
from deepatlas.db.graph import Graph
from deepatlas.db.queries import class_drivers
from deepatlas.db.server import LocalServer
from deepatlas.db.templates import load_template
from deepatlas.errors import CheckpointError
from deepatlas.paths import models_dir


@cli_errors
def demo(
    class_name: Annotated[str, typer.Option("--class", "-c", help="Class whose drivers to show.")] = "Sandal",
    k: Annotated[int, typer.Option("-k", help="How many drivers.")] = 10,
    retrain: Annotated[bool, typer.Option(help="Train again even if a checkpoint is cached.")] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Start Neo4j, train (or reuse) the reference CNN, ingest the Fashion-MNIST test split,
    print the top drivers of Sandal, and say how to ask the same in Neo4j Browser."""
    from deepatlas.models.checkpoint import load_checkpoint
    from deepatlas.workflows.build import ingest, train_reference
    from deepatlas.workspace import DataSource, Workspace
    server = LocalServer()
    if not os.environ.get("NEO4J_URI"):
        err.print("1/4 starting Neo4j ...")
        server.start()
    path = models_dir() / "fashion-cnn.pt"
    ckpt = None
    if path.exists() and not retrain:
        try:
            ckpt = load_checkpoint(path)
            err.print(f"2/4 reusing {path} (test accuracy {ckpt.meta.get('accuracy', 0):.2%})")
        except CheckpointError as exc:
            err.print(f"2/4 cached checkpoint unusable ({exc}); training afresh")
    if ckpt is None:
        err.print("2/4 training the reference CNN on Fashion-MNIST ...")
        with progress_bars() as progress:
            report = train_reference(Workspace(device=device, progress=progress), path)
        err.print(f"    test accuracy {report.test_accuracy:.2%} in {report.train_seconds:.0f} s")
        ckpt = load_checkpoint(path)
    err.print("3/4 ingesting the test split (10,000 images) ...")
    with Graph() as g:
        with progress_bars() as progress:
            ws = Workspace(g, model=ckpt, data=DataSource("fashion-mnist", "test"), device=device, progress=progress)
            rep = ingest(ws, replace=True, restart=True)  # the demo owns its run (and any stopped ingest of it)
        err.print(f"    {sum(rep.nodes.values()):,} nodes, {sum(rep.edges.values()):,} edges in run {rep.run.name}")
        info, stored, rows = class_drivers(g, class_name, k=k, run=rep.run.name)
    console.print(f"\n4/4 [bold]top {k} drivers of {stored}[/] (Pearson r of unit activation with P({stored})):")
    for i, row in enumerate(rows, 1):
        console.print(f"  {i:2d}. {row['layer']:>6} unit {row['unit']:<4} ({row['kind']})  r = {row['r']:.3f}")
    template = load_template("class_drivers")
    body = "\n".join(line for line in template.text.splitlines() if not line.startswith("//"))
    where = os.environ.get("NEO4J_URI") or server.browser_url
    console.print(Panel(Text(
        f"Open {where}\n"
        f"user neo4j, password in {server.password_file if not os.environ.get('NEO4J_URI') else '$NEO4J_PASSWORD'}\n\n"
        f":param run => '{info.name}';\n:param class => '{stored}';\n:param k => {k};\n\n{body}"),
        title="the same question in Neo4j Browser", expand=False,
    ))
