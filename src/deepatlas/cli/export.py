"""`deepatlas export graphml|gexf|json`: a run for Gephi and friends."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepatlas.cli._common import JsonOpt, RunOpt, cli_errors, console, print_json
from deepatlas.workspace import Workspace

app = typer.Typer(help="Export a run as GraphML or GEXF (Gephi) or node-link JSON.", no_args_is_help=True)


def _export(fmt: str, out: Path | None, run: str | None, pixels: bool, json_out: bool) -> None:
    from deepatlas.workflows.analysis import export_run
    with Workspace(run=run) as ws:
        rep = export_run(ws, out or Path(f"{ws.run_info().name}.{fmt}"), fmt=fmt, pixels=pixels)
    if json_out:
        print_json(rep.to_json())
    else:
        console.print(f"wrote {rep.nodes:,} nodes and {rep.edges:,} edges of run {rep.run} to {rep.path}")


OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output file. Default: RUN.FORMAT here.")]
PixOpt = Annotated[bool, typer.Option("--pixels", help="Include the input-pixel nodes and their edges.")]


@app.command()
@cli_errors
def graphml(out: OutOpt = None, run: RunOpt = None, pixels: PixOpt = False, json_out: JsonOpt = False) -> None:
    """GraphML (Gephi, yEd, Cytoscape). List properties become ';'-joined strings."""
    _export("graphml", out, run, pixels, json_out)


@app.command()
@cli_errors
def gexf(out: OutOpt = None, run: RunOpt = None, pixels: PixOpt = False, json_out: JsonOpt = False) -> None:
    """GEXF, Gephi's own format (the co-activation paper drew its graphs in Gephi)."""
    _export("gexf", out, run, pixels, json_out)


@app.command("json")
@cli_errors
def json_cmd(out: OutOpt = None, run: RunOpt = None, pixels: PixOpt = False, json_out: JsonOpt = False) -> None:
    """networkx node-link JSON, every property kept (pixel_r included)."""
    _export("json", out, run, pixels, json_out)
