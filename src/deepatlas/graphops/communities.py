"""Communities of the co-activation graph (Horta & Mileo, section on communities).

Three backends, chosen with ``algorithm`` (see :data:`ALGORITHMS`):

- ``"leiden"`` (default): python-igraph's ``community_leiden`` on the modularity objective,
  iterated until an iteration changes nothing, in C (leidenalg's C++ package gave the same
  modularity 7x slower on a 713k-edge graph, so it is not used);
- ``"igraph"``: python-igraph's ``community_multilevel``, the Louvain method in C;
- ``"python-louvain"``: python-louvain's ``best_partition``, pure Python (the paper's tool and the
  default before; about 35 s on the 576k-edge ResNet-18 graph).

The default was chosen by measurement (bench/RESULTS.md, "communities"): Leiden reaches the
modularity of python-louvain (within 0.01) at a small fraction of its time. Leiden also
guarantees that every community is connected: Louvain can leave a community whose members
are joined only through a node that has since moved elsewhere (Traag et al. 2019 found up to
25% of Louvain's communities badly connected and up to 16% disconnected). With Leiden such a
community is split, so a community's members always reach each other through positively
correlated pairs inside it; the count of communities can be a little higher and the
modularity equal or higher. Isolated nodes (dead units) are their own communities in every backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import community as community_louvain  # python-louvain
import networkx as nx

from deepatlas.errors import UsageError

__all__ = ["ALGORITHMS", "DEFAULT_ALGORITHM", "NEGATIVE_MODES", "Partition", "coactivation_graph", "communities", "louvain"]

#: Community-detection backends (see the module docstring).
ALGORITHMS = ("leiden", "igraph", "python-louvain")
DEFAULT_ALGORITHM = "leiden"

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


def louvain(
    g: nx.Graph, *, weight: str = "weight", resolution: float = 1.0, seed: int = 0, algorithm: str = DEFAULT_ALGORITHM,
) -> Partition:
    """Seeded community detection (Louvain or Leiden) and the partition's modularity.

    Isolated nodes (e.g. dead units) each form their own community. The same graph, seed and
    algorithm give the same partition.

    Parameters
    ----------
    g : networkx.Graph
    weight : str, default "weight"
    resolution : float, default 1.0
    seed : int, default 0
    algorithm : {"leiden", "igraph", "python-louvain"}, default "leiden"
        See :data:`ALGORITHMS` and the module docstring.

    Returns
    -------
    Partition

    Raises
    ------
    UsageError
        An unknown ``algorithm``.

    Examples
    --------
    >>> g = nx.Graph([("a", "b", {"weight": 1}), ("c", "d", {"weight": 1}), ("b", "c", {"weight": 0.01})])
    >>> louvain(g).communities
    [['a', 'b'], ['c', 'd']]

    References
    ----------
    Blondel et al. (2008), Fast unfolding of communities in large networks. J. Stat. Mech. P10008.
    Traag, Waltman & van Eck (2019), From Louvain to Leiden: guaranteeing well-connected
    communities. Scientific Reports 9, 5233.
    Horta, V. A. C. & Mileo, A. (2019), "Towards Explaining Deep Neural Networks Through Graph
    Analysis", DEXA 2019 workshops, CCIS 1062, Springer, doi:10.1007/978-3-030-27684-3_20.
    """
    if algorithm not in ALGORITHMS:
        raise UsageError(f"algorithm must be one of {', '.join(ALGORITHMS)}; got {algorithm!r}")
    if g.number_of_nodes() == 0:
        return Partition({}, 0.0)
    if g.number_of_edges() == 0:
        raw = {n: i for i, n in enumerate(sorted(g.nodes))}
        return Partition(raw, 0.0)
    if algorithm == "python-louvain":
        raw = community_louvain.best_partition(g, weight=weight, resolution=resolution, random_state=seed)
        membership = _ordered(raw)
        return Partition(membership, float(community_louvain.modularity(membership, g, weight=weight)))
    return _igraph_partition(g, weight, resolution, seed, algorithm)


def communities(
    nodes: Sequence[str], edges: Iterable[tuple[str, str, float]], *, negative: str = "drop", resolution: float = 1.0,
    seed: int = 0, algorithm: str = DEFAULT_ALGORITHM,
) -> tuple[Partition, int]:
    """:func:`louvain` straight from (a, b, r) rows, the way the workflows call it.

    The C backends get their igraph built from integer arrays, never through networkx (at
    ResNet-18's 576k edges the networkx round trip cost twice the Leiden run itself);
    python-louvain gets :func:`coactivation_graph`. Same weights (``negative``), same
    partition and modularity as ``louvain(coactivation_graph(...))`` for a seed, given each
    unordered pair once (the rows of a run are).

    Returns
    -------
    (Partition, int)
        The partition and the number of edges it was computed on (weight > 0, no self-loops).
    """
    if algorithm not in ALGORITHMS:
        raise UsageError(f"algorithm must be one of {', '.join(ALGORITHMS)}; got {algorithm!r}")
    if negative not in NEGATIVE_MODES:
        raise UsageError(f"negative must be one of {NEGATIVE_MODES}, got {negative!r}")
    if algorithm == "python-louvain":
        g = coactivation_graph(({"key": n} for n in nodes), edges, negative=negative)
        return louvain(g, resolution=resolution, seed=seed, algorithm=algorithm), g.number_of_edges()
    order = sorted(set(nodes))
    index = {n: i for i, n in enumerate(order)}
    import numpy as np

    rows = edges if isinstance(edges, list) else list(edges)  # each unordered pair once (as the run's rows are)
    if not rows:
        return Partition({n: i for i, n in enumerate(order)}, 0.0), 0
    # C-level maps over the columns: 3x faster than a generator per column (and than zip(*rows))
    from operator import itemgetter

    src = np.fromiter(map(index.__getitem__, map(itemgetter(0), rows)), dtype=np.int64, count=len(rows))
    dst = np.fromiter(map(index.__getitem__, map(itemgetter(1), rows)), dtype=np.int64, count=len(rows))
    w = np.fromiter(map(itemgetter(2), rows), dtype=np.float64, count=len(rows))
    if negative == "abs":
        w = np.abs(w)
    keep = (w > 0) & (src != dst)
    src, dst, w = np.minimum(src, dst)[keep], np.maximum(src, dst)[keep], w[keep]
    if len(w) == 0:
        return Partition({n: i for i, n in enumerate(order)}, 0.0), 0
    return _igraph_run(order, src, dst, w, resolution, seed, algorithm), len(w)


def _ordered(raw: dict[Any, int]) -> dict[Any, int]:
    """Community ids renumbered by decreasing size, ties by smallest member."""
    groups: dict[int, list[Any]] = {}
    for node, c in raw.items():
        groups.setdefault(c, []).append(node)
    ordered = sorted(groups.values(), key=lambda members: (-len(members), min(members)))
    return {node: i for i, members in enumerate(ordered) for node in members}


def _igraph_partition(g: nx.Graph, weight: str, resolution: float, seed: int, algorithm: str) -> Partition:
    """Leiden or multilevel Louvain, python-igraph's C implementations, on an igraph copy of ``g``."""
    nodes = sorted(g.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    edges: list[tuple[int, int]] = []
    weights: list[float] = []
    for a, nbrs in g.adjacency():  # the adjacency dicts directly: 4x faster than edge views
        ia = index[a]
        for b, d in nbrs.items():
            ib = index[b]
            if ia <= ib:
                edges.append((ia, ib))
                weights.append(float(d.get(weight, 1.0)))
    import numpy as np

    pairs = np.array(edges, dtype=np.int64).reshape(-1, 2)
    return _igraph_run(nodes, pairs[:, 0], pairs[:, 1], np.array(weights, dtype=np.float64), resolution, seed, algorithm)


def _igraph_run(nodes: list[str], src: Any, dst: Any, weights: Any, resolution: float, seed: int,
                algorithm: str) -> Partition:
    """Leiden or multilevel Louvain on an igraph of ``len(nodes)`` vertices (``nodes`` sorted) and
    weighted edges ``src[k] <= dst[k]`` (integer arrays), sorted first: the same graph gives the
    same igraph, hence the same partition for a seed, whichever order the edges came in."""
    import random

    import igraph as ig
    import numpy as np

    order = np.argsort(src * len(nodes) + dst, kind="stable")
    h = ig.Graph(n=len(nodes), edges=list(zip(src[order].tolist(), dst[order].tolist(), strict=True)), directed=False)
    h.es["weight"] = weights[order].tolist()
    # both draw their node order from igraph's generator: seed it, then restore the default
    ig.set_random_number_generator(random.Random(seed))
    try:
        if algorithm == "leiden":
            found = h.community_leiden(objective_function="modularity", weights="weight", resolution=resolution,
                                       n_iterations=-1)
        else:
            found = h.community_multilevel(weights="weight", resolution=resolution)
    finally:
        ig.set_random_number_generator(random)
    labels = list(found.membership)
    membership = _ordered({n: labels[i] for i, n in enumerate(nodes)})
    q = h.modularity([membership[n] for n in nodes], weights="weight")
    return Partition(membership, float(q))
