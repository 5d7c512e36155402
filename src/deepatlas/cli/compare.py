"""`deepatlas compare --base A --head B`: what changed inside the model between two runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from deepatlas.cli._common import DeviceOpt, JsonOpt, cli_errors, console, print_json, progress_bars
from deepatlas.workspace import Workspace

BaseOpt = Annotated[str, typer.Option("--base", help="The earlier run (A), e.g. last release's checkpoint.")]
HeadOpt = Annotated[str, typer.Option("--head", help="The later run (B), over the same data, split and images.")]


@cli_errors
def compare(
    base: BaseOpt,
    head: HeadOpt,
    top_k: Annotated[int, typer.Option(min=1, help="A class's drivers: its k units of largest r.")] = 10,
    min_match_r: Annotated[float, typer.Option(min=0.0, max=1.0, help="A unit whose best one-to-one partner "
                                                                      "correlates below this is unmatched.")] = 0.5,
    flattened: Annotated[bool, typer.Option("--flattened/--means-only", help="Also CKA on the flattened maps "
                                                                             "(minibatch estimate).")] = True,
    batch_size: Annotated[int, typer.Option(min=4, help="Images per batch (the minibatch CKA's batch too).")] = 64,
    out: Annotated[Path | None, typer.Option(help="Folder for the figures. Default: $DEEPATLAS_HOME/out")] = None,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Compare two runs of two checkpoints over the same images: layer similarity (linear CKA),
    each unit of A matched to a unit of B, each class's drivers then and now, the class pairs
    whose confusion rose, and how the class communities moved.

    Writes a (:Comparison) node linked to both runs and (:Neuron)-[:MATCHES {r}]->(:Neuron)
    edges; the templates changed_units and drivers_side_by_side read them in Browser.

    Example: deepatlas compare --base mine-v1 --head mine-v2
    """
    from deepatlas.workflows.compare import compare_runs

    with Workspace(device=device, out_dir=out) as ws, progress_bars(not json_out) as ws.progress:
        rep = compare_runs(ws, base, head, top_k=top_k, min_match_r=min_match_r, flattened=flattened,
                           batch_size=batch_size)
    if json_out:
        print_json(rep.to_json())
        return
    layers = Table(title=f"{rep.base} -> {rep.head}: layers ({rep.images:,} images)")
    for col in ("layer (base)", "layer (head)", "CKA means", "CKA flattened", "live units matched", "mean match r"):
        layers.add_column(col, justify="left" if col.startswith("layer") else "right", overflow="fold")
    for m in rep.layer_matches:
        layers.add_row(m["layer_base"], m["layer_head"], f"{m['cka_means']:.3f}",
                       "-" if m["cka_flattened"] is None else f"{m['cka_flattened']:.3f}",
                       f"{m['matched']} of {m['live_base']}" + (f" ({m['units_base'] - m['live_base']} dead)"
                                                               if m["live_base"] < m["units_base"] else ""),
                       f"{m['mean_match_r']:.3f}")
    console.print(layers)
    drift = Table(title=f"class drivers: top {rep.params['top_k']} in {rep.base}, matched, still top in {rep.head}")
    for col in ("class", "kept", "new drivers", "lost drivers"):
        drift.add_column(col, overflow="fold")
    for c in sorted(rep.class_drift, key=lambda c: c["overlap"]):
        drift.add_row(c["class"], f"{c['kept']} of {c['top_k']}", ", ".join(c["gained"][:4]) + (" ..." if len(c["gained"]) > 4 else ""),
                      ", ".join(c["lost"][:4]) + (" ..." if len(c["lost"]) > 4 else ""))
    console.print(drift)
    rises = [p for p in rep.pair_drift if p["mistakes_change"] > 0][:10]
    pairs = Table(title="class pairs confused more" if rises else "no class pair is confused more")
    for col in ("a", "b", "mistakes", "Jaccard", "new shared units"):
        pairs.add_column(col, overflow="fold")
    for p in rises:
        pairs.add_row(p["a"], p["b"], f"{p['mistakes_base']} -> {p['mistakes_head']}",
                      f"{p['jaccard_base']:.2f} -> {p['jaccard_head']:.2f}", ", ".join(p["new_shared"][:4]))
    console.print(pairs)
    cm = rep.communities
    console.print(f"class communities: adjusted Rand {cm['adjusted_rand']:.3f}, NMI {cm['nmi']:.3f} "
                  f"(base: {cm['base']}; head: {cm['head']})", highlight=False)
    for name, path in rep.figures.items():
        console.print(f"figure {name}: {path}", highlight=False, soft_wrap=True)
