"""`deepatlas audit confusion|diff`: scripted audits with JSON out and exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from deepatlas.cli._common import JsonOpt, RunOpt, cli_errors, console, err, print_json
from deepatlas.db.runs import correlation_name
from deepatlas.paths import out_dir
from deepatlas.workspace import Workspace

app = typer.Typer(help="Audits for scripts and CI: JSON out, exit code 1 when a threshold is crossed.", no_args_is_help=True)


@app.command()
@cli_errors
def confusion(
    run: RunOpt = None,
    max_jaccard: Annotated[float | None, typer.Option(help="Fail if any class pair's Jaccard exceeds this.")] = None,
    min_r: Annotated[float | None, typer.Option(help="Fail if r(Jaccard, mistakes) over class pairs is below this.")] = None,
    top_k: Annotated[int, typer.Option(min=1, help="A class's neuron set: its k most correlated neurons.")] = 10,
    set_min_r: Annotated[float | None, typer.Option(help="...and only neurons with r >= this.")] = None,
    pairs: Annotated[int, typer.Option(min=1, help="Pairs listed per ranking.")] = 10,
    out: Annotated[Path | None, typer.Option(help="Folder for the PNG figures. Default: $DEEPATLAS_HOME/out/audit-RUN")] = None,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Skip the figures.")] = False,
    graph: Annotated[str | None, typer.Option(help="Graph of the class communities: complete or stored. Default: the "
                                                   "communities `analyze communities` stored for the run, else the "
                                                   "complete correlation graph, as `analyze communities` computes.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Which classes does the model see as alike, and is that where it errs?

    Ranks class pairs by neuron-set overlap (Jaccard) and by mistakes, lists their shared
    neurons and the Louvain communities, and correlates overlap with mistakes. Writes a
    scatter plot, the community-coloured class graph and a neuron heatmap grid. Exit code 1
    when --max-jaccard or --min-r is crossed; nothing is written to the graph.
    """
    from deepatlas.workflows.analysis import audit_confusion
    with Workspace(run=run, out_dir=out) as ws:
        if out is None:
            ws.out_dir = out_dir() / f"audit-{ws.run_info().name}"
        rep = audit_confusion(ws, top_k=top_k, set_min_r=set_min_r, max_jaccard=max_jaccard, min_corr=min_r,
                              pairs=pairs, figures=not no_plots, community_graph=graph)
    if json_out:
        print_json(rep.to_json())
    else:
        st = rep.overlap.stats
        console.print(f"[bold]{rep.run}[/] (co-activation: {correlation_name(rep.overlap.correlation)}): "
                      f"r(Jaccard, mistakes) = [bold]{st.r:.3f}[/] (p = {st.p_value:.2g}, {st.n_pairs} pairs); "
                      f"{len(rep.communities.communities)} communities, modularity {rep.communities.modularity:.3f} "
                      f"(on the {rep.communities.graph_label}"
                      + (", as stored by `analyze communities`)" if rep.communities.params.get("read_from") else ")"))
        for title, rows in (("by overlap", rep.by_overlap), ("by mistakes", rep.by_mistakes)):
            table = Table(title=f"{rep.run}: class pairs {title}")
            for col in ("a", "b", "jaccard", "mistakes", "a as b", "b as a", "shared neurons"):
                table.add_column(col)
            for p in rows:
                table.add_row(p["a"], p["b"], f"{p['jaccard']:.3f}", str(p["mistakes"]), str(p["a_as_b"]), str(p["b_as_a"]),
                              ", ".join(p["shared_neurons"][:6]) + (" ..." if len(p["shared_neurons"]) > 6 else ""))
            console.print(table)
        for c in rep.communities.communities:
            if c["classes"]:
                console.print(f"  community {c['index']} ({c['size']} nodes): {', '.join(c['classes'])}")
        for name, path in rep.figures.items():
            console.print(f"  figure {name}: {path}")
        console.print("[green]PASS[/]" if rep.passed else "[red]FAIL[/]")
    if not rep.passed:
        for failure in rep.failures:
            err.print(f"[red]audit failed:[/] {failure}")
        raise typer.Exit(1)


@app.command()
@cli_errors
def diff(
    base: Annotated[str, typer.Option("--base", help="The earlier run (A).")],
    head: Annotated[str, typer.Option("--head", help="The later run (B), over the same images.")],
    max_confusion_rise: Annotated[int | None, typer.Option(min=0, help="Fail if any class pair's mistakes rose by more "
                                                                       "than this.")] = None,
    min_cka: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Fail if any layer's CKA with its partner layer "
                                                                         "(per-channel means) is below this.")] = None,
    top_k: Annotated[int, typer.Option(min=1, help="A class's drivers: its k units of largest r.")] = 10,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Gate a new checkpoint in CI: compare two runs (nothing is written) and exit 1 when a
    class pair's confusion rose past --max-confusion-rise or a layer's similarity fell under
    --min-cka.

    Example: deepatlas audit diff --base release-41 --head release-42 --max-confusion-rise 20 --json
    """
    from deepatlas.workflows.compare import audit_diff

    with Workspace(device=device) as ws:
        rep = audit_diff(ws, base, head, max_confusion_rise=max_confusion_rise, min_cka=min_cka, top_k=top_k)
    if json_out:
        print_json(rep.to_json())
    else:
        c = rep.comparison
        for m in c.layer_matches:
            console.print(f"  {m['layer_base']} vs {m['layer_head']}: CKA {m['cka_means']:.3f}, "
                          f"{m['matched']} of {m['live_base']} live units matched", highlight=False)
        for p in [p for p in c.pair_drift if p["mistakes_change"] > 0][:5]:
            console.print(f"  {p['a']} / {p['b']}: mistakes {p['mistakes_base']} -> {p['mistakes_head']}", highlight=False)
        console.print("[green]PASS[/]" if rep.passed else "[red]FAIL[/]")
    if not rep.passed:
        for failure in rep.failures:
            err.print(f"[red]audit failed:[/] {failure}")
        raise typer.Exit(1)
