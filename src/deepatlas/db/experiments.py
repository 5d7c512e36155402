"""Graph side of experiments: unit rankings and selections in, Experiment nodes out."""

from __future__ import annotations

import json
import uuid
from typing import Any

from deepatlas.db.graph import Graph
from deepatlas.db.runs import RunInfo
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
        f"MATCH (c:Class {{key: $class_key}}) MATCH (n:Neuron)-[e:{rel}]->(c) "
        f"WHERE n.run = $run AND ($layer IS NULL OR n.layer = $layer) AND NOT n.dead "
        f"RETURN n.layer AS layer, n.index AS index, e.{prop} AS score ORDER BY score DESC, layer, index"
    )
    for name, (rel, prop) in RANKINGS.items()
}


def unit_layers(graph: Graph, run: RunInfo) -> list[dict[str, Any]]:
    """The run's captured layers in forward order (name, kind, size)."""
    return graph.read(
        "MATCH (l:Layer {run: $key}) WHERE l.kind IN ['conv', 'dense'] RETURN l.name AS name, l.kind AS kind, "
        "l.size AS size ORDER BY l.position", {"key": run.key})


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
        "MATCH (c:Community {run: $key, index: $i})<-[:MEMBER_OF]-(n:Neuron) RETURN n.layer AS layer, n.index AS index "
        "ORDER BY layer, index", {"key": run.key, "i": community})
    if not rows:
        n = graph.read("MATCH (c:Community {run: $key}) RETURN count(c) AS n", {"key": run.key})[0]["n"]
        if n == 0:
            raise NotFoundError(f"run {run.name} has no communities yet: run `deepatlas analyze communities` first")
        raise NotFoundError(f"community {community} has no neurons; run {run.name} has communities 0..{n - 1}")
    return [(row["layer"], int(row["index"])) for row in rows]


def shared_units(graph: Graph, run: RunInfo, a_key: str, b_key: str) -> list[tuple[str, int]]:
    """Neurons in both classes' sets (IN_SET, from `deepatlas analyze overlap`)."""
    has = graph.read("MATCH (n:Neuron {run: $key})-[s:IN_SET]->() RETURN count(s) AS n", {"key": run.key})[0]["n"]
    if not has:
        raise NotFoundError(f"run {run.name} has no class neuron sets yet: run `deepatlas analyze overlap` first")
    rows = graph.read(
        "MATCH (a:Class {key: $a})<-[:IN_SET]-(n:Neuron)-[:IN_SET]->(b:Class {key: $b}) "
        "RETURN n.layer AS layer, n.index AS index ORDER BY layer, index", {"a": a_key, "b": b_key})
    return [(row["layer"], int(row["index"])) for row in rows]


def community_classes(graph: Graph, run: RunInfo, index: int) -> list[str]:
    """The classes of stored community ``index`` (empty when it has none or does not exist)."""
    rows = graph.read("MATCH (c:Community {run: $key, index: $i}) RETURN c.classes AS classes", {"key": run.key, "i": index})
    return list(rows[0]["classes"] or []) if rows else []


def layer_size(graph: Graph, run: RunInfo, name: str) -> int:
    """How many units the run's layer ``name`` has.

    Raises
    ------
    NotFoundError
        The run has no such layer.
    """
    rows = graph.read("MATCH (l:Layer {run: $key, name: $name}) RETURN l.size AS s", {"key": run.key, "name": name})
    if not rows:
        raise NotFoundError(f"run {run.name} has no layer {name!r}")
    return int(rows[0]["s"])


def write_experiment(graph: Graph, run: RunInfo, kind: str, params: dict[str, Any], result: dict[str, Any],
                     targets: list[tuple[str, int]], class_keys: list[str]) -> str:
    """One Experiment node with TARGETS edges (rank = position in the selection) and ON_CLASS edges."""
    key = experiment_key(run.key, uuid.uuid4().hex[:10])
    rows = [{"key": neuron_key(run.key, layer, index), "rank": i + 1} for i, (layer, index) in enumerate(targets)]
    graph.write_many([
        ("CREATE (x:Experiment {key: $key, run: $run, kind: $kind, params: $params, result: $result, created_at: datetime()})",
         {"key": key, "run": run.key, "kind": kind, "params": json.dumps(params), "result": json.dumps(result)}),
        ("MATCH (x:Experiment {key: $key}) UNWIND $rows AS row MATCH (n:Neuron {key: row.key}) "
         "CREATE (x)-[:TARGETS {rank: row.rank}]->(n)", {"key": key, "rows": rows}),
        ("MATCH (x:Experiment {key: $key}) UNWIND $classes AS ck MATCH (c:Class {key: ck}) CREATE (x)-[:ON_CLASS]->(c)",
         {"key": key, "classes": class_keys}),
    ])
    return key
