"""Read a run's co-activation subgraph for the analytics, and write their results back.

Every write-back replaces the previous result of the same analysis for the run in one
transaction, so running an analysis twice leaves exactly one copy, and a failure leaves the
previous one intact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepatlas.db.graph import Graph
from deepatlas.db.runs import RunInfo
from deepatlas.db.templates import cypher
from deepatlas.rows import community_key

__all__ = ["RunGraph", "read_pixel_maps", "read_run_export", "read_run_graph", "write_centrality", "write_communities", "write_overlaps"]


@dataclass
class RunGraph:
    """The hidden+class part of a run, as plain rows and arrays.

    Attributes
    ----------
    neurons : list of dict
        key, layer, index, dead, in stored order (layer position, then index).
    classes : list of dict
        key, index, name.
    edges : list of (str, str, float)
        Every COACTIVATES edge among neurons and classes.
    class_r : ndarray (n_neurons, n_classes)
        r of each neuron with each class (0 where no edge: dead units).
    confusion : ndarray (n_classes, n_classes)
    """

    run: RunInfo
    neurons: list[dict[str, Any]]
    classes: list[dict[str, Any]]
    edges: list[tuple[str, str, float]]
    class_r: np.ndarray
    confusion: np.ndarray

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in self.classes]


def read_run_graph(graph: Graph, run: RunInfo) -> RunGraph:
    """Pull the hidden+class co-activation subgraph of a complete run."""
    key = run.key
    neurons = graph.read(
        cypher("run_neurons"), {"key": key})
    classes = graph.read(
        cypher("run_classes"), {"key": key})
    edges = [
        (row["a"], row["b"], row["r"])
        for label in ("Neuron", "Class")
        for row in graph.read(
            cypher("run_coactivations", label=label), {"key": key})
    ]
    n_index = {row["key"]: i for i, row in enumerate(neurons)}
    c_index = {row["key"]: i for i, row in enumerate(classes)}
    class_r = np.zeros((len(neurons), len(classes)))
    for a, b, r in edges:
        if a in n_index and b in c_index:
            class_r[n_index[a], c_index[b]] = r
    rows = graph.read(cypher("run_confusion"), {"key": key})
    confusion = np.array(json.loads(rows[0]["confusion"]), dtype=np.int64)
    return RunGraph(run, neurons, classes, edges, class_r, confusion)


def write_communities(graph: Graph, run: RunInfo, membership: dict[str, int], modularity: float,
                      classes_by_community: list[list[str]], params: dict[str, Any]) -> int:
    """Replace the run's Community nodes and MEMBER_OF edges. Returns the number of communities."""
    sizes: dict[int, int] = {}
    for c in membership.values():
        sizes[c] = sizes.get(c, 0) + 1
    communities = [
        {"key": community_key(run.key, c), "index": c, "size": sizes[c], "classes": classes_by_community[c]}
        for c in sorted(sizes)
    ]
    members = [{"node": node, "community": community_key(run.key, c)} for node, c in membership.items()]
    graph.write_many([
        (cypher("delete_communities"), {"run": run.key}),
        (cypher("create_communities"),
         {"rows": communities, "run": run.key, "q": modularity, "graph": params.get("graph", "stored")}),
        (cypher("create_memberships"), {"rows": members}),
        (cypher("run_modularity"),
         {"run": run.key, "q": modularity, "rows": communities, "params": json.dumps(params), "graph": params.get("graph", "stored")}),
    ])
    return len(communities)


def read_memberships(graph: Graph, run: RunInfo) -> tuple[dict[str, int], float, str, dict[str, Any]] | None:
    """The communities ``analyze communities`` stored for the run: (node key -> community index,
    modularity, the graph kind they were computed on, their parameters), or None if none are."""
    rows = graph.read(cypher("run_memberships"), {"run": run.key})
    members = {r["node"]: int(r["community"]) for r in rows if r["node"] is not None}
    if not members or rows[0]["q"] is None:
        return None
    try:
        params = json.loads(rows[0]["params"]) if rows[0]["params"] else {}
    except ValueError:
        params = {}
    return members, float(rows[0]["q"]), str(rows[0]["graph"] or params.get("graph", "stored")), params


def write_overlaps(graph: Graph, run: RunInfo, set_rows: list[dict[str, Any]], pair_rows: list[dict[str, Any]],
                   summary: dict[str, Any]) -> None:
    """Replace IN_SET (neuron -> class set membership) and OVERLAPS (class pairs) for the run.

    ``set_rows``: neuron, cls, rank, r.  ``pair_rows``: a, b, jaccard, shared, mistakes.
    """
    graph.write_many([
        (cypher("delete_in_set"), {"run": run.key}),
        (cypher("delete_overlaps"), {"run": run.key}),
        (cypher("create_in_set"), {"rows": set_rows}),
        (cypher("create_overlaps"),
         {"rows": pair_rows}),
        (cypher("run_overlap_summary"), {"run": run.key, "summary": json.dumps(summary)}),
    ])


def write_centrality(graph: Graph, run: RunInfo, rows: list[dict[str, Any]]) -> None:
    """Set degree, degree_centrality and strength on the run's neurons and classes."""
    graph.write_many([
        (cypher("set_centrality", label=label),
         {"rows": rows})
        for label in ("Neuron", "Class")
    ])


def read_pixel_maps(graph: Graph, run: RunInfo, neuron_keys: list[str]) -> list[np.ndarray]:
    """Each neuron's pixel correlations reshaped to the run's pixel grid (channel 0 if several)."""
    rows = graph.read(cypher("run_pixel_shape"), {"key": run.key})
    shape = rows[0]["shape"] if rows and rows[0]["shape"] else None
    found = {row["key"]: row["pixel_r"] for row in graph.read(
        cypher("neuron_pixel_r"), {"keys": neuron_keys})}
    maps = []
    for key in neuron_keys:
        v = np.asarray(found[key], dtype=float)
        if shape is None:
            side = round(len(v) ** 0.5)
            c, h, w = len(v) // (side * side), side, side
        else:
            c, h, w = shape
        maps.append(v.reshape(c, h, w)[0])
    return maps


def read_run_export(graph: Graph, run: RunInfo, *, pixels: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every node of a run (Pixel nodes only if asked) and every edge among them, with properties."""
    labels = ["Layer", "Neuron", "Class", "Community", "Experiment"] + (["Pixel"] if pixels else [])
    nodes: list[dict[str, Any]] = []
    for label in labels:
        for row in graph.read(cypher("export_nodes", label=label), {"key": run.key}):
            nodes.append({"label": label, **row["props"]})
    keys = {n["key"] for n in nodes}
    edges: list[dict[str, Any]] = []
    for label in labels:
        for row in graph.read(
            cypher("export_edges", label=label),
            {"key": run.key},
        ):
            if row["target"] in keys:
                edges.append({"source": row["source"], "target": row["target"], "type": row["type"], **row["props"]})
    return nodes, edges
