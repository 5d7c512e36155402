"""Graph side of experiments: unit rankings and selections in, Experiment nodes out."""

from __future__ import annotations

import json
import uuid
from typing import Any

from deepatlas.db.graph import Graph
from deepatlas.db.runs import RunInfo
from deepatlas.db.templates import cypher
from deepatlas.errors import NotFoundError, UsageError
from deepatlas.rows import experiment_key, neuron_key

__all__ = [
    "RANKINGS",
    "class_ranking",
    "community_classes",
    "community_units",
    "dense_layers",
    "layer_size",
    "shared_units",
    "unit_layers",
    "write_experiment",
]

#: ranking name -> (relationship type, property). GRADIENT and INFLUENCES exist once those
#: edges are ingested (`deepatlas ingest --edges ...`).
RANKINGS = {"coactivation": ("COACTIVATES", "r"), "gradient": ("GRADIENT", "pg"), "influence": ("INFLUENCES", "score")}

_RANK_QUERIES = {
    name: (
        cypher("class_ranking", rel=rel, prop=prop)
    )
    for name, (rel, prop) in RANKINGS.items()
}


def unit_layers(graph: Graph, run: RunInfo) -> list[dict[str, Any]]:
    """The run's captured layers in forward order (name, kind, size)."""
    return graph.read(
        cypher("unit_layers"), {"key": run.key})


def dense_layers(graph: Graph, run: RunInfo) -> list[str]:
    return [row["name"] for row in unit_layers(graph, run) if row["kind"] == "dense"]


def class_ranking(graph: Graph, run: RunInfo, class_key: str, *, by: str = "coactivation", layer: str | None = None) -> list[tuple[str, int, float]]:
    """Live units ranked by their edge to a class, best first: (layer, index, score).

    Raises
    ------
    UsageError
        Unknown ranking, or one whose edges this run does not have.
    """
    if by not in RANKINGS:
        raise UsageError(f"unknown ranking {by!r}; use one of {', '.join(RANKINGS)}")
    rows = graph.read(_RANK_QUERIES[by], {"class_key": class_key, "run": run.key, "layer": layer})
    if not rows:
        rel = RANKINGS[by][0]
        raise UsageError(f"run {run.name} has no {rel} edges" + (f" in layer {layer}" if layer else "")
                         + ("" if by == "coactivation" else "; ingest with --edges including " + by))
    return [(row["layer"], int(row["index"]), float(row["score"])) for row in rows]


def community_units(graph: Graph, run: RunInfo, community: int) -> list[tuple[str, int]]:
    rows = graph.read(
        cypher("community_neurons"), {"key": run.key, "i": community})
    if not rows:
        n = graph.read(cypher("count_communities"), {"key": run.key})[0]["n"]
        if n == 0:
            raise NotFoundError(f"run {run.name} has no communities yet: run `deepatlas analyze communities` first")
        raise NotFoundError(f"community {community} has no neurons; run {run.name} has communities 0..{n - 1}")
    return [(row["layer"], int(row["index"])) for row in rows]


def shared_units(graph: Graph, run: RunInfo, a_key: str, b_key: str) -> list[tuple[str, int]]:
    """Neurons in both classes' sets (IN_SET, from `deepatlas analyze overlap`)."""
    has = graph.read(cypher("count_in_set"), {"key": run.key})[0]["n"]
    if not has:
        raise NotFoundError(f"run {run.name} has no class neuron sets yet: run `deepatlas analyze overlap` first")
    rows = graph.read(
        cypher("shared_set_neurons"), {"a": a_key, "b": b_key})
    return [(row["layer"], int(row["index"])) for row in rows]


def community_classes(graph: Graph, run: RunInfo, index: int) -> list[str]:
    """The classes of stored community ``index`` (empty when it has none or does not exist)."""
    rows = graph.read(cypher("community_classes"), {"key": run.key, "i": index})
    return list(rows[0]["classes"] or []) if rows else []


def layer_size(graph: Graph, run: RunInfo, name: str) -> int:
    """How many units the run's layer ``name`` has.

    Raises
    ------
    NotFoundError
        The run has no such layer.
    """
    rows = graph.read(cypher("layer_size"), {"key": run.key, "name": name})
    if not rows:
        raise NotFoundError(f"run {run.name} has no layer {name!r}")
    return int(rows[0]["s"])


def write_experiment(graph: Graph, run: RunInfo, kind: str, params: dict[str, Any], result: dict[str, Any],
                     targets: list[tuple[str, int]], class_keys: list[str]) -> str:
    """One Experiment node with TARGETS edges (rank = position in the selection) and ON_CLASS edges."""
    key = experiment_key(run.key, uuid.uuid4().hex[:10])
    rows = [{"key": neuron_key(run.key, layer, index), "rank": i + 1} for i, (layer, index) in enumerate(targets)]
    graph.write_many([
        (cypher("create_experiment"),
         {"key": key, "run": run.key, "kind": kind, "params": json.dumps(params), "result": json.dumps(result)}),
        (cypher("experiment_targets"), {"key": key, "rows": rows}),
        (cypher("experiment_classes"),
         {"key": key, "classes": class_keys}),
    ])
    return key
