"""Analytics workflows on a stored run: communities, class overlap, centrality, audits, export.

Like :mod:`deepatlas.workflows.build`, this sits above ``graphops`` and ``db``: it reads a run,
runs the pure algorithms, and writes results back (``write=True``) or only reports (audits).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from deepatlas.db.analytics import (
    RunGraph,
    read_pixel_maps,
    read_run_export,
    read_run_graph,
    write_centrality,
    write_communities,
    write_overlaps,
)
from deepatlas.db.graph import Graph
from deepatlas.db.runs import RunInfo, correlation_name
from deepatlas.errors import UsageError
from deepatlas.graphops import (
    OverlapStats,
    centrality,
    class_neuron_sets,
    coactivation_graph,
    communities,
    jaccard_matrix,
    mistakes_matrix,
    overlap_vs_mistakes,
)
from deepatlas.graphops.communities import ALGORITHMS, DEFAULT_ALGORITHM, NEGATIVE_MODES
from deepatlas.workspace import Result, Workspace

log = logging.getLogger(__name__)

__all__ = [
    "COMMUNITY_GRAPHS",
    "GRAPH_LABELS",
    "AuditReport",
    "CentralityReport",
    "CommunityReport",
    "ExportReport",
    "OverlapReport",
    "analyze_centrality",
    "analyze_communities",
    "analyze_overlap",
    "audit_confusion",
    "complete_edges",
    "export_run",
    "neuron_label",
]


def neuron_label(row: dict[str, Any]) -> str:
    """``layer:index``, how reports name a unit."""
    return f"{row['layer']}:{row['index']}"


#: Which co-activation graph Louvain runs on. "complete" (default): every pair of units and
#: classes with its Pearson r, recomputed from the run's model and data, as the paper's graph
#: links every pair; "stored": the sparsified COACTIVATES edges written at ingest.
COMMUNITY_GRAPHS = ("complete", "stored")

#: How each graph is named beside every modularity the package reports.
GRAPH_LABELS = {"complete": "complete correlation graph (every pair, r recomputed from the run's model and data)",
                "stored": "stored sparsified COACTIVATES edges"}


def _graph(rg: RunGraph, negative: str, edges: list[tuple[str, str, float]] | None = None) -> nx.Graph:
    nodes = [dict(r) for r in rg.neurons] + [dict(r) for r in rg.classes]
    return coactivation_graph(nodes, rg.edges if edges is None else edges, negative=negative)


def _check_choices(negative: str, algorithm: str = DEFAULT_ALGORITHM) -> None:
    """Checked before the server or the model is touched (the Workspace opens them lazily)."""
    if negative not in NEGATIVE_MODES:
        raise UsageError(f"negative must be one of {', '.join(NEGATIVE_MODES)}, got {negative!r}")
    if algorithm not in ALGORITHMS:
        raise UsageError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")


@dataclass
class CommunityReport(Result):
    """Communities of a run's co-activation graph, their modularity, and which graph that was."""

    run: str
    modularity: float
    communities: list[dict[str, Any]]
    params: dict[str, Any]
    membership: dict[str, int] = field(repr=False, default_factory=dict)
    graph: str = "stored"
    correlation: str = "pearson"  #: the run's edge weight (RunInfo.correlation)

    @property
    def graph_label(self) -> str:
        """Which graph the communities and the modularity were computed on."""
        return GRAPH_LABELS[self.graph]

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "correlation": self.correlation, "modularity": self.modularity,
                "modularity_graph": self.graph, "modularity_graph_description": self.graph_label, "params": self.params,
                "communities": self.communities}


def complete_edges(ws: Workspace, rg: RunGraph, *, max_matrix_mb: float | None = None) -> list[tuple[str, str, float]]:
    """Every pair of the run's units and classes with its r (the run's correlation), recomputed from the run's
    own model (sha256-checked) and data with the ingest's code; pairs with an undefined r (a
    constant unit) are left out.

    *Choice*: recomputed rather than kept from ingest. The complete matrix is what the graph
    sparsifies away (M^2 / 2 values, 2.9M for the 2,448 nodes of ResNet-18's run); keeping it
    would mean a second store beside Neo4j for every run, while the recomputation is one
    forward pass over the run's images and gives the same r (the same accumulators).

    Raises
    ------
    UsageError
        The unit-unit matrix exceeds ``max_matrix_mb`` (use the stored graph), or the model's
        units do not match the run's.
    """
    from deepatlas.ingest.coactivation import MAX_MATRIX_MB, compute_coactivation
    from deepatlas.workflows.experiments import _context

    info = ws.run_info()
    ctx = _context(ws)
    layers = list(dict.fromkeys(n["layer"] for n in rg.neurons))
    res = compute_coactivation(ctx.ckpt.model, ctx.data, layers=layers, device=ctx.device, normalize=ctx.ckpt.normalize,
                               class_values=str(info.params.get("class_values", "probs")),
                               correlation=info.correlation,
                               max_matrix_mb=MAX_MATRIX_MB if max_matrix_mb is None else max_matrix_mb)
    if res.units.r is None:
        raise UsageError(f"run {info.name} has too many units for the complete correlation matrix within the memory "
                         "budget; use --graph stored or a larger --max-matrix-mb")
    keys = [n["key"] for n in rg.neurons] + [c["key"] for c in rg.classes]
    r = res.units.r.numpy()
    if r.shape[0] != len(keys):
        raise UsageError(f"the model gives {r.shape[0]} units and classes, run {info.name} stores {len(keys)}")
    i, j = np.triu_indices(len(keys), k=1)
    vals = r[i, j]
    ok = np.isfinite(vals)
    return [(keys[a], keys[b], float(v)) for a, b, v in zip(i[ok].tolist(), j[ok].tolist(), vals[ok].tolist(), strict=True)]


def _communities(rg: RunGraph, resolution: float, seed: int, negative: str,
                 edges: list[tuple[str, str, float]] | None = None, kind: str = "stored",
                 algorithm: str = DEFAULT_ALGORITHM) -> CommunityReport:
    keys = [n["key"] for n in rg.neurons] + [c["key"] for c in rg.classes]
    part, n_edges = communities(keys, rg.edges if edges is None else edges, negative=negative, resolution=resolution,
                                seed=seed, algorithm=algorithm)
    params = {"resolution": resolution, "seed": seed, "negative": negative, "graph": kind,
              "edges": n_edges, "algorithm": algorithm}
    return _community_report(rg, part.membership, part.modularity, params, kind)


def _community_report(rg: RunGraph, membership: dict[str, int], modularity: float, params: dict[str, Any],
                      kind: str) -> CommunityReport:
    """A partition of the run's nodes as a report: each community's classes and units per layer."""
    names = {c["key"]: c["name"] for c in rg.classes}
    labels = {n["key"]: neuron_label(n) for n in rg.neurons}
    order = [c["name"] for c in rg.classes]
    groups: dict[int, list[str]] = {}
    for node, index in membership.items():
        groups.setdefault(index, []).append(node)
    out = []
    for i in sorted(groups):
        members = groups[i]
        layers: dict[str, int] = {}
        for m in members:
            if m in labels:
                layer = labels[m].split(":")[0]
                layers[layer] = layers.get(layer, 0) + 1
        out.append({"index": i, "size": len(members), "classes": sorted((names[m] for m in members if m in names), key=order.index),
                    "neurons_by_layer": layers})
    return CommunityReport(rg.run.name, modularity, out, params, membership, kind, rg.run.correlation)


def _stored_communities(graph: Graph, info: RunInfo, rg: RunGraph) -> CommunityReport | None:
    """The communities ``analyze communities`` wrote for the run, if it did."""
    from deepatlas.db.analytics import read_memberships

    stored = read_memberships(graph, info)
    if stored is None:
        return None
    membership, q, kind, params = stored
    return _community_report(rg, membership, q, {**params, "read_from": "stored communities"},
                             kind if kind in COMMUNITY_GRAPHS else "stored")


def analyze_communities(
    ws: Workspace, *, resolution: float = 1.0, seed: int = 0, negative: str = "drop", graph_kind: str = "complete",
    max_matrix_mb: float | None = None, write: bool = True, algorithm: str = DEFAULT_ALGORITHM,
) -> CommunityReport:
    """Communities (Leiden by default, or Louvain) on the run's hidden+class co-activation graph;
    write Community nodes and MEMBER_OF edges.

    Parameters
    ----------
    ws : Workspace
        The run (and, for ``graph_kind="complete"``, its model on ``ws.device``).
    resolution : float, default 1.0
    seed : int, default 0
    negative : {"drop", "abs"}, default "drop"
        How negative correlations are weighted (see ``graphops.communities.NEGATIVE_MODES``).
    graph_kind : {"complete", "stored"}, default "complete"
        The complete correlation graph (every pair, as in the paper; r recomputed from the
        run's model and data, see :func:`complete_edges`) or the stored sparsified edges.
        The report, the Run node and every Community node say which (``graph``).
    max_matrix_mb : float, optional
        Memory budget of the recomputation ("complete").
    write : bool, default True
    algorithm : {"leiden", "igraph", "python-louvain"}, default "leiden"
        The backend (see :mod:`deepatlas.graphops.communities`).

    References
    ----------
    Horta, V. A. C. & Mileo, A. (2019), "Towards Explaining Deep Neural Networks Through Graph
    Analysis", DEXA 2019 workshops, CCIS 1062, Springer, doi:10.1007/978-3-030-27684-3_20; Blondel et al. (2008), "Fast unfolding of communities in
    large networks", J. Stat. Mech. P10008.
    """
    if graph_kind not in COMMUNITY_GRAPHS:
        raise UsageError(f"graph must be one of {', '.join(COMMUNITY_GRAPHS)}, got {graph_kind!r}")
    _check_choices(negative, algorithm)
    info = ws.run_info()
    rg = read_run_graph(ws.graph, info)
    edges = None
    if graph_kind == "complete":
        edges = complete_edges(ws, rg, max_matrix_mb=max_matrix_mb)
    report = _communities(rg, resolution, seed, negative, edges, graph_kind, algorithm)
    if write:
        write_communities(ws.graph, info, report.membership, report.modularity,
                          [c["classes"] for c in report.communities], report.params)
    return report


@dataclass
class OverlapReport(Result):
    """Class neuron sets, their pairwise Jaccard and mistakes, and the correlation of the two."""

    run: str
    params: dict[str, Any]
    stats: OverlapStats
    pairs: list[dict[str, Any]]
    sets: dict[str, list[str]]
    class_names: list[str]
    jaccard: np.ndarray = field(repr=False)
    mistakes: np.ndarray = field(repr=False)
    #: What ranks a class's neurons into its set: the run's co-activation (RunInfo.correlation).
    #: ``stats.r`` (Jaccard vs mistakes over class pairs) is always Pearson's.
    correlation: str = "pearson"

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "correlation": self.correlation, "params": self.params, "r": self.stats.r,
                "p_value": self.stats.p_value, "pairs": self.pairs, "sets": self.sets}


#: Up to this many classes every class pair is listed (and written as an OVERLAPS edge); above
#: it (ImageNet's 1,000 classes: 499,500 pairs) only the pairs that share a neuron or were
#: confused at least once: the others are zero on both sides.
ALL_PAIRS_CLASSES = 100


def _overlap(rg: RunGraph, top_k: int | None, min_r: float | None) -> OverlapReport:
    sets = class_neuron_sets(rg.class_r, top_k=top_k, min_r=min_r)
    jac = jaccard_matrix(sets)
    mis = mistakes_matrix(rg.confusion)
    st = overlap_vs_mistakes(jac, mis)  # over every pair, listed or not
    names = rg.class_names
    labels = [neuron_label(n) for n in rg.neurons]
    ia, ib = np.triu_indices(len(names), k=1)
    if len(names) > ALL_PAIRS_CLASSES:
        keep = (jac[ia, ib] > 0) | (mis[ia, ib] > 0)
        ia, ib = ia[keep], ib[keep]
    pairs = []
    for a, b in zip(ia.tolist(), ib.tolist(), strict=True):
        shared = sorted(sets[a] & sets[b])
        pairs.append({"a": names[a], "b": names[b], "jaccard": float(jac[a, b]), "shared": len(shared),
                      "shared_neurons": [labels[i] for i in shared], "mistakes": int(mis[a, b]),
                      "a_as_b": int(rg.confusion[a, b]), "b_as_a": int(rg.confusion[b, a])})
    ranked: dict[str, list[str]] = {}
    for c, members in enumerate(sets):
        col = rg.class_r[:, c]
        ranked[names[c]] = [labels[i] for i in sorted(members, key=lambda i: (-col[i], i))]
    return OverlapReport(rg.run.name, {"top_k": top_k, "min_r": min_r}, st, pairs, ranked, names, jac, mis,
                         rg.run.correlation)


def analyze_overlap(ws: Workspace, *, top_k: int | None = 10, min_r: float | None = None, write: bool = True) -> OverlapReport:
    """Class neuron sets, pairwise Jaccard, mistakes, and their correlation; write IN_SET and OVERLAPS.

    Parameters
    ----------
    top_k : int or None, default 10
        A class's set: its ``top_k`` neurons by r.
    min_r : float or None, default None
        ...and/or those with r >= ``min_r``.
    """
    graph, info = ws.graph, ws.run_info()
    rg = read_run_graph(graph, info)
    report = _overlap(rg, top_k, min_r)
    if write:
        keys = [n["key"] for n in rg.neurons]
        label_to_key = {neuron_label(n): n["key"] for n in rg.neurons}
        ckeys = {c["name"]: c["key"] for c in rg.classes}
        set_rows = [
            {"neuron": label_to_key[label], "cls": ckeys[name], "rank": rank + 1,
             "r": float(rg.class_r[keys.index(label_to_key[label]), rg.class_names.index(name)])}
            for name, members in report.sets.items() for rank, label in enumerate(members)
        ]
        pair_rows = [{"a": ckeys[p["a"]], "b": ckeys[p["b"]], "jaccard": p["jaccard"], "shared": p["shared"],
                      "mistakes": p["mistakes"]} for p in report.pairs]
        write_overlaps(graph, info, set_rows, pair_rows, {**report.params, "r": report.stats.r, "p_value": report.stats.p_value})
    return report


@dataclass
class CentralityReport(Result):
    """The most central neurons (degree, strength) of a run's co-activation graph."""

    run: str
    top: list[dict[str, Any]]
    params: dict[str, Any]
    correlation: str = "pearson"  #: the edge weight summed into strength (RunInfo.correlation)


def analyze_centrality(ws: Workspace, *, negative: str = "drop", k: int = 10, write: bool = True) -> CentralityReport:
    """Degree, degree centrality and strength (weighted degree) of every neuron and class."""
    _check_choices(negative)
    graph, info = ws.graph, ws.run_info()
    rg = read_run_graph(graph, info)
    cent = centrality(_graph(rg, negative))
    labels = {n["key"]: neuron_label(n) for n in rg.neurons} | {c["key"]: c["name"] for c in rg.classes}
    rows: list[dict[str, Any]] = [{"key": key, **vals} for key, vals in cent.items()]
    if write:
        write_centrality(graph, info, rows)
    neurons = [r for r in rows if r["key"] in {n["key"] for n in rg.neurons}]
    top = sorted(neurons, key=lambda r: (-r["strength"], labels[r["key"]]))[:k]
    return CentralityReport(info.name, [{"unit": labels[r["key"]], **{k2: v for k2, v in r.items() if k2 != "key"}} for r in top],
                            {"negative": negative}, info.correlation)


@dataclass
class AuditReport(Result):
    """A confusion audit: class pairs by overlap and by mistakes, communities, thresholds crossed."""

    run: str
    overlap: OverlapReport
    communities: CommunityReport
    by_overlap: list[dict[str, Any]]
    by_mistakes: list[dict[str, Any]]
    thresholds: dict[str, float | None]
    failures: list[str]
    figures: dict[str, str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run, "correlation": self.overlap.correlation, "passed": self.passed, "failures": self.failures,
            "thresholds": self.thresholds,
            "overlap_vs_mistakes": {"r": self.overlap.stats.r, "p_value": self.overlap.stats.p_value,
                                    "n_pairs": self.overlap.stats.n_pairs},
            "set_params": self.overlap.params, "by_overlap": self.by_overlap, "by_mistakes": self.by_mistakes,
            "communities": {"modularity": self.communities.modularity, "graph": self.communities.graph,
                            "params": self.communities.params,
                            "list": self.communities.communities},
            "class_sets": self.overlap.sets, "figures": self.figures,
        }


def _audit_communities(ws: Workspace, rg: RunGraph, kind: str | None, seed: int) -> CommunityReport:
    if kind is not None and kind not in COMMUNITY_GRAPHS:
        raise UsageError(f"graph must be one of {', '.join(COMMUNITY_GRAPHS)}, got {kind!r}")
    if kind is None:
        stored = _stored_communities(ws.graph, rg.run, rg)
        if stored is not None:
            return stored
        kind = "complete"
    if kind == "complete":
        try:
            return _communities(rg, 1.0, seed, "drop", complete_edges(ws, rg), "complete")
        except UsageError as exc:  # the complete matrix does not fit the budget
            log.warning("class communities on the stored edges: %s", str(exc).splitlines()[0])
    return _communities(rg, 1.0, seed, "drop")


def audit_confusion(
    ws: Workspace,
    *,
    top_k: int | None = 10,
    set_min_r: float | None = None,
    max_jaccard: float | None = None,
    min_corr: float | None = None,
    pairs: int = 10,
    figures: bool = False,
    seed: int = 0,
    community_graph: str | None = None,
) -> AuditReport:
    """A read-only audit of a run's class confusion against its neuron overlap.

    Parameters
    ----------
    top_k, set_min_r : see :func:`analyze_overlap`
    max_jaccard : float, optional
        Fail when any class pair's Jaccard exceeds it (classes too entangled in the network).
    min_corr : float, optional
        Fail when the Pearson r between pairwise Jaccard and pairwise mistakes is below it
        (the graph no longer explains where the model errs).
    pairs : int, default 10
        Pairs listed in each ranking.
    figures : bool, default False
        Write the PNG figures into ``ws.out``.
    seed : int, default 0
        Community seed (when the communities are computed here).
    community_graph : {None, "complete", "stored"}
        The graph of the class communities. None: the communities ``analyze communities``
        stored for the run when there are any (one answer to "which classes are alike"),
        else computed as ``analyze communities`` computes them by default, on the complete
        correlation graph (the stored edges when its matrix does not fit; ``graph_note``
        says so). A name computes on that graph.

    Returns
    -------
    AuditReport
        ``failures`` lists each crossed threshold; the CLI exits 1 when it is not empty.
    """
    for name, value in (("max_jaccard", max_jaccard), ("min_corr", min_corr)):
        if value is not None and not -1.0 <= value <= 1.0:
            raise UsageError(f"{name} must lie in [-1, 1], got {value}")
    if pairs <= 0:
        raise UsageError("pairs must be positive")
    graph, info = ws.graph, ws.run_info()
    rg = read_run_graph(graph, info)
    ov = _overlap(rg, top_k, set_min_r)
    comm = _audit_communities(ws, rg, community_graph, seed)
    by_overlap = sorted(ov.pairs, key=lambda p: (-p["jaccard"], -p["mistakes"], p["a"], p["b"]))[:pairs]
    by_mistakes = sorted(ov.pairs, key=lambda p: (-p["mistakes"], -p["jaccard"], p["a"], p["b"]))[:pairs]
    failures = []
    if max_jaccard is not None:
        worst = by_overlap[0] if by_overlap else None
        if worst is not None and worst["jaccard"] > max_jaccard:
            over = [p for p in ov.pairs if p["jaccard"] > max_jaccard]
            failures.append(f"{len(over)} class pair(s) have Jaccard > {max_jaccard}; worst {worst['a']} / {worst['b']} = {worst['jaccard']:.3f}")
    if min_corr is not None and ov.stats.r < min_corr:
        failures.append(f"Jaccard-vs-mistakes r = {ov.stats.r:.3f} is below {min_corr}")
    drawn: dict[str, str] = {}
    if figures:
        from deepatlas.report.figures import (
            class_community_graph,
            heatmap_grid,
            jaccard_mistakes_scatter,
        )

        out = ws.out
        out.mkdir(parents=True, exist_ok=True)
        drawn["scatter"] = str(jaccard_mistakes_scatter(ov, out / "jaccard_vs_mistakes.png"))
        drawn["communities"] = str(class_community_graph(ov, comm, out / "class_communities.png"))
        from deepatlas.report.figures import notable_classes

        key_of = {neuron_label(n): n["key"] for n in rg.neurons}
        shown = notable_classes(ov, 12)  # every class up to 12; else those of the notable pairs
        chosen = [(name, rank, label) for name in shown for rank, label in enumerate(ov.sets[name][:3], 1)]
        maps = read_pixel_maps(graph, info, [key_of[label] for _, _, label in chosen])
        drawn["heatmaps"] = str(heatmap_grid(
            [(f"{name} #{rank}: {label}", m) for (name, rank, label), m in zip(chosen, maps, strict=True)],
            out / "neuron_heatmaps.png", columns=6,
            label=f"{correlation_name(info.correlation)} (unit vs pixel, over the run's images)",
            title=f"{info.name}: pixel correlations ({correlation_name(info.correlation)}) of each class's top 3 neurons"
                  + (f" ({len(shown)} of {len(ov.class_names):,} classes: the most overlapping and confused pairs)"
                     if len(shown) < len(ov.class_names) else "")))
    return AuditReport(info.name, ov, comm, by_overlap, by_mistakes,
                       {"max_jaccard": max_jaccard, "min_corr": min_corr}, failures, drawn)


EXPORT_FORMATS = ("graphml", "gexf", "json")


@dataclass
class ExportReport(Result):
    """Where a run was exported, in which format, and how much."""

    run: str
    path: str
    format: str
    nodes: int
    edges: int


def export_run(ws: Workspace, path: str | Path, *, fmt: str = "graphml", pixels: bool = False) -> ExportReport:
    """Write a run as GraphML or GEXF (for Gephi) or node-link JSON.

    List properties (``pixel_r``, a community's ``classes``) are kept in JSON; GraphML and GEXF
    take scalars only, so lists become ``;``-joined strings there (``pixel_r`` is dropped).
    Returns the counts written.
    """
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    info = ws.run_info()
    nodes, edges = read_run_export(ws.graph, info, pixels=pixels)
    g = nx.MultiDiGraph(name=info.name, correlation=info.correlation)  # what every COACTIVATES r is
    for n in nodes:
        attrs = {k: v for k, v in n.items() if k != "key"}
        if fmt != "json":
            attrs = _scalar_attrs(attrs)
        g.add_node(n["key"], **attrs)
    for e in edges:
        attrs = {k: v for k, v in e.items() if k not in ("source", "target")}
        g.add_edge(e["source"], e["target"], key=None, **(attrs if fmt == "json" else _scalar_attrs(attrs)))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "graphml":
        nx.write_graphml(g, out)
    elif fmt == "gexf":
        nx.write_gexf(g, out)
    else:
        import json

        out.write_text(json.dumps(nx.node_link_data(g, edges="links"), default=str))
    return ExportReport(info.name, str(out), fmt, g.number_of_nodes(), g.number_of_edges())


def _scalar_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in attrs.items():
        if k == "pixel_r" or v is None:
            continue
        out[k] = ";".join(map(str, v)) if isinstance(v, list) else v
    return out
