"""`deepatlas analyze communities|overlap|centrality`: graph analytics written back to the run."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from deepatlas.cli._common import (
    DataDirOpt,
    DeviceOpt,
    JsonOpt,
    RunOpt,
    cli_errors,
    console,
    model_flags,
    print_json,
)
from deepatlas.db.runs import correlation_name
from deepatlas.workspace import DataSource, ModelSource, Workspace

app = typer.Typer(help="Communities, class overlap and centrality, computed and written back to the run.", no_args_is_help=True)

DryOpt = Annotated[bool, typer.Option("--dry-run", help="Compute and report, write nothing.")]


@app.command()
@cli_errors
@model_flags(of_run=True)
def communities(
    run: RunOpt = None,
    resolution: Annotated[float, typer.Option(min=0.01, help="Louvain resolution: > 1 gives more, smaller communities.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Louvain's random seed.")] = 0,
    negative: Annotated[str, typer.Option(help="Negative r: drop (not an edge) or abs (weight |r|).")] = "drop",
    algorithm: Annotated[str, typer.Option(help="leiden (igraph, C; communities always connected), igraph (Louvain "
                                           "in C) or python-louvain (pure Python, slow on big graphs).")] = "leiden",
    graph: Annotated[str, typer.Option(help="complete: every pair's r, recomputed from the run's model and data (the paper's "
                                            "graph); stored: the sparsified COACTIVATES edges.")] = "complete",
    model: ModelSource = None,  # type: ignore[assignment]  # the model flags (model_flags), for --graph complete
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    dry_run: DryOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Leiden (default) or Louvain communities of the hidden+class co-activation graph, and their modularity.

    By default on the complete correlation graph (every pair of units, as in the paper: one
    forward pass over the run's images); --graph stored uses the sparsified edges and reads
    only the database. Writes (:Community) nodes and MEMBER_OF edges, replacing any earlier
    result for the run; each records which graph its modularity was computed on.
    """
    from deepatlas.workflows.analysis import analyze_communities
    with Workspace(run=run, model=model, data=DataSource(data_dir=data_dir), device=device) as ws:
        rep = analyze_communities(ws, resolution=resolution, seed=seed, negative=negative, graph_kind=graph,
                                  write=not dry_run, algorithm=algorithm)
    if json_out:
        print_json(rep.to_json())
        return
    table = Table(title=f"{rep.run}: {len(rep.communities)} communities, modularity {rep.modularity:.3f} "
                        f"on the {rep.graph_label}; edge weight {correlation_name(rep.correlation)}")
    for col in ("#", "size", "classes", "neurons by layer"):
        table.add_column(col)
    for c in rep.communities:
        table.add_row(str(c["index"]), str(c["size"]), ", ".join(c["classes"]) or "-",
                      ", ".join(f"{k} {v}" for k, v in c["neurons_by_layer"].items()))
    console.print(table)


@app.command()
@cli_errors
def overlap(
    run: RunOpt = None,
    top_k: Annotated[int, typer.Option(min=1, help="A class's neuron set: its k most correlated neurons.")] = 10,
    min_r: Annotated[float | None, typer.Option(help="...and only neurons with r >= this.")] = None,
    dry_run: DryOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Jaccard overlap of classes' neuron sets against the mistakes between them.

    Writes IN_SET (neuron -> class) and OVERLAPS (class pair: jaccard, shared, mistakes) edges.
    """
    from deepatlas.workflows.analysis import analyze_overlap
    with Workspace(run=run) as ws:
        rep = analyze_overlap(ws, top_k=top_k, min_r=min_r, write=not dry_run)
    if json_out:
        print_json(rep.to_json())
        return
    console.print(f"{rep.run}: Pearson r(Jaccard, mistakes) = [bold]{rep.stats.r:.3f}[/] "
                  f"(p = {rep.stats.p_value:.2g}, {rep.stats.n_pairs} class pairs)")
    table = Table(title=f"{rep.run}: class pairs by overlap (neuron sets ranked by {correlation_name(rep.correlation)})")
    for col in ("a", "b", "jaccard", "shared", "mistakes"):
        table.add_column(col)
    for p in sorted(rep.pairs, key=lambda p: -p["jaccard"])[:10]:
        table.add_row(p["a"], p["b"], f"{p['jaccard']:.3f}", str(p["shared"]), str(p["mistakes"]))
    console.print(table)


@app.command()
@cli_errors
def centrality(
    run: RunOpt = None,
    k: Annotated[int, typer.Option("-k", min=1, help="How many neurons to list.")] = 10,
    negative: Annotated[str, typer.Option(help="Negative r: drop or abs.")] = "drop",
    dry_run: DryOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Degree and weighted degree (strength) of every neuron and class, set as properties."""
    from deepatlas.workflows.analysis import analyze_centrality
    with Workspace(run=run) as ws:
        rep = analyze_centrality(ws, negative=negative, k=k, write=not dry_run)
    if json_out:
        print_json(rep.to_json())
        return
    table = Table(title=f"{rep.run}: most central neurons (strength: sum of {correlation_name(rep.correlation)})")
    for col in ("unit", "degree", "strength"):
        table.add_column(col)
    for row in rep.top:
        table.add_row(row["unit"], str(row["degree"]), f"{row['strength']:.3f}")
    console.print(table)
