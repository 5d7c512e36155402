"""Louvain communities of the co-activation graph (Horta & Mileo, section on communities)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import community as community_louvain  # python-louvain
import networkx as nx

from deepatlas.errors import UsageError

__all__ = ["NEGATIVE_MODES", "Partition", "coactivation_graph", "louvain"]

#: How negative correlations become Louvain weights (Louvain needs weights >= 0).
#: "drop" (default): an anti-correlated pair is not an edge. Two units that never fire together
#: should not pull each other into a community; keeping |r| would merge opposites.
#: "abs": weight = |r|, for users who read any strong dependence as togetherness.
NEGATIVE_MODES = ("drop", "abs")


def coactivation_graph(
    nodes: Iterable[dict[str, Any]],
    edges: Iterable[tuple[str, str, float]],
    *,
    negative: str = "drop",
) -> nx.Graph:
    """An undirected weighted graph from node rows and (a, b, r) edges.

    Parameters
    ----------
    nodes : iterable of dict
        Each with ``key`` and any attributes (``kind``, ``layer``, ``name`` ...), kept on the node.
    edges : iterable of (str, str, float)
        Pearson r per pair.
    negative : {"drop", "abs"}, default "drop"
        See :data:`NEGATIVE_MODES`.

    Returns
    -------
    networkx.Graph
        Edge attributes ``r`` (signed) and ``weight`` (>= 0, used by the algorithms).
    """
    if negative not in NEGATIVE_MODES:
        raise UsageError(f"negative must be one of {NEGATIVE_MODES}, got {negative!r}")
    g = nx.Graph()
    for row in nodes:
        g.add_node(row["key"], **{k: v for k, v in row.items() if k != "key"})
    for a, b, r in edges:
        if a == b:
            continue
        w = abs(r) if negative == "abs" else r
        if w > 0:
            g.add_edge(a, b, r=float(r), weight=float(w))
    return g


@dataclass(frozen=True)
class Partition:
    """A community assignment.

    Attributes
    ----------
    membership : dict of node -> int
        Community ids 0..n-1, numbered by decreasing size (ties by smallest node key).
    modularity : float
        Newman's weighted modularity of the partition at ``resolution`` 1.
    """

    membership: dict[str, int]
    modularity: float

    @property
    def communities(self) -> list[list[str]]:
        out: list[list[str]] = [[] for _ in range(1 + max(self.membership.values(), default=-1))]
        for node, c in self.membership.items():
            out[c].append(node)
        return [sorted(c) for c in out]


def louvain(g: nx.Graph, *, weight: str = "weight", resolution: float = 1.0, seed: int = 0) -> Partition:
    """Seeded Louvain (python-louvain's ``best_partition``) and the partition's modularity.

    Isolated nodes (e.g. dead units) each form their own community.

    Parameters
    ----------
    g : networkx.Graph
    weight : str, default "weight"
    resolution : float, default 1.0
    seed : int, default 0

    Returns
    -------
    Partition

    Examples
    --------
    >>> g = nx.Graph([("a", "b", {"weight": 1}), ("c", "d", {"weight": 1}), ("b", "c", {"weight": 0.01})])
    >>> louvain(g).communities
    [['a', 'b'], ['c', 'd']]

    References
    ----------
    Blondel et al. (2008), Fast unfolding of communities in large networks.
    Horta & Mileo (2019), Towards explaining deep neural networks through graph analysis.
    """
    if g.number_of_nodes() == 0:
        return Partition({}, 0.0)
    if g.number_of_edges() == 0:
        raw = {n: i for i, n in enumerate(sorted(g.nodes))}
        return Partition(raw, 0.0)
    raw = community_louvain.best_partition(g, weight=weight, resolution=resolution, random_state=seed)
    groups: dict[int, list[str]] = {}
    for node, c in raw.items():
        groups.setdefault(c, []).append(node)
    ordered = sorted(groups.values(), key=lambda members: (-len(members), min(members)))
    membership = {node: i for i, members in enumerate(ordered) for node in members}
    q = community_louvain.modularity(membership, g, weight=weight)
    return Partition(membership, float(q))
