"""Pure graph algorithms on networkx graphs and arrays; no database, no model.

- :func:`coactivation_graph`  rows -> a networkx graph of the hidden+class subgraph
- :func:`louvain`             seeded Leiden / Louvain partition and its modularity (``ALGORITHMS``)
- :func:`communities`         louvain straight from (a, b, r) rows, no networkx copy for the C backends
- :func:`class_neuron_sets`   each class's neuron set (top-k or threshold)
- :func:`jaccard_matrix`      Jaccard similarity of every pair of classes' sets
- :func:`mistakes_matrix`, :func:`overlap_vs_mistakes`   the paper's confusion analysis
- :func:`centrality`          degree and weighted degree of every node
"""

from __future__ import annotations

from deepatlas.graphops.centrality import centrality
from deepatlas.graphops.communities import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    NEGATIVE_MODES,
    Partition,
    coactivation_graph,
    communities,
    louvain,
)
from deepatlas.graphops.overlap import (
    OverlapStats,
    class_neuron_sets,
    jaccard_matrix,
    mistakes_matrix,
    overlap_vs_mistakes,
)

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "NEGATIVE_MODES",
    "OverlapStats",
    "Partition",
    "centrality",
    "class_neuron_sets",
    "coactivation_graph",
    "communities",
    "jaccard_matrix",
    "louvain",
    "mistakes_matrix",
    "overlap_vs_mistakes",
]
