"""Degree and weighted-degree centrality (the co-activation paper's future work)."""

from __future__ import annotations

import networkx as nx

__all__ = ["centrality"]


def centrality(g: nx.Graph, *, weight: str = "weight") -> dict[str, dict[str, float]]:
    """Per node: ``degree`` (edges), ``degree_centrality`` (degree / (n-1)) and ``strength``
    (sum of edge weights).

    Examples
    --------
    >>> g = nx.Graph([("a", "b", {"weight": 0.5}), ("a", "c", {"weight": 0.25})])
    >>> centrality(g)["a"]
    {'degree': 2, 'degree_centrality': 1.0, 'strength': 0.75}
    """
    n = g.number_of_nodes()
    return {
        node: {
            "degree": int(g.degree(node)),
            "degree_centrality": g.degree(node) / (n - 1) if n > 1 else 0.0,
            "strength": float(g.degree(node, weight=weight)),
        }
        for node in g.nodes
    }
