"""Hand-built graphs whose communities, Jaccard values and correlations are known exactly."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from deepatlas.errors import UsageError
from deepatlas.graphops import (
    centrality,
    class_neuron_sets,
    coactivation_graph,
    jaccard_matrix,
    louvain,
    mistakes_matrix,
    overlap_vs_mistakes,
)


def _two_cliques() -> nx.Graph:
    nodes = [{"key": k} for k in "abcdefgh"]
    edges = []
    for group in ("abcd", "efgh"):
        edges += [(x, y, 0.9) for i, x in enumerate(group) for y in group[i + 1 :]]
    edges += [("d", "e", 0.1), ("a", "h", -0.95)]  # a weak bridge, and a strong anti-correlation
    return coactivation_graph(nodes, edges)


def test_negative_correlations_are_dropped_by_default_and_abs_on_request() -> None:
    g = _two_cliques()
    assert not g.has_edge("a", "h") and g.number_of_edges() == 13
    g_abs = coactivation_graph([{"key": k} for k in "ah"], [("a", "h", -0.95)], negative="abs")
    assert g_abs.edges["a", "h"]["weight"] == pytest.approx(0.95) and g_abs.edges["a", "h"]["r"] == pytest.approx(-0.95)
    with pytest.raises(UsageError):
        coactivation_graph([], [], negative="square")


def test_louvain_finds_the_two_cliques_with_the_exact_modularity() -> None:
    g = _two_cliques()
    part = louvain(g, seed=3)
    assert part.communities == [list("abcd"), list("efgh")]
    # Newman modularity by hand: Q = sum_c [L_c/m - (d_c/2m)^2]
    m = 12 * 0.9 + 0.1
    d_c = 2 * 6 * 0.9 + 0.1
    expected = 2 * (6 * 0.9 / m - (d_c / (2 * m)) ** 2)
    assert part.modularity == pytest.approx(expected, abs=1e-12)
    assert louvain(g, seed=3).membership == part.membership  # seeded: deterministic


def test_louvain_edge_cases() -> None:
    assert louvain(nx.Graph()).membership == {}
    g = nx.Graph()
    g.add_nodes_from(["x", "y"])
    part = louvain(g)
    assert sorted(part.membership.values()) == [0, 1] and part.modularity == 0.0


def test_class_sets_top_k_and_threshold() -> None:
    # 5 neurons x 2 classes
    r = np.array([[0.9, 0.1], [0.8, 0.7], [0.2, 0.8], [-0.5, 0.75], [0.8, -0.1]])
    assert class_neuron_sets(r, top_k=2) == [{0, 1}, {2, 3}]  # ties: lower index first (1 before 4)
    assert class_neuron_sets(r, top_k=None, min_r=0.7) == [{0, 1, 4}, {1, 2, 3}]
    assert class_neuron_sets(r, top_k=3, min_r=0.85) == [{0}, set()]
    assert class_neuron_sets(np.array([[-0.2], [-0.1]]), top_k=1) == [set()]  # negative r never enters by top-k
    with pytest.raises(UsageError):
        class_neuron_sets(r, top_k=None, min_r=None)


def test_jaccard_and_mistakes_by_hand() -> None:
    sets = [{1, 2, 3}, {2, 3, 4}, {5}, set()]
    j = jaccard_matrix(sets)
    assert j[0, 1] == pytest.approx(2 / 4) and j[0, 2] == 0.0 and j[3, 3] == 0.0 and j[0, 0] == 1.0
    assert np.allclose(j, j.T)
    conf = np.array([[50, 3, 1], [7, 40, 0], [2, 0, 60]])
    assert mistakes_matrix(conf).tolist() == [[0, 10, 3], [10, 0, 0], [3, 0, 0]]


def test_overlap_vs_mistakes_matches_scipy_and_a_perfect_line() -> None:
    j = np.array([[1, 0.5, 0.1, 0.3], [0.5, 1, 0.2, 0.0], [0.1, 0.2, 1, 0.4], [0.3, 0.0, 0.4, 1]])
    mis = 10 * j + 2  # exactly linear in Jaccard
    np.fill_diagonal(mis, 0)
    st = overlap_vs_mistakes(j, mis)
    assert st.r == pytest.approx(1.0) and st.n_pairs == 6 and st.p_value < 1e-6
    anti = overlap_vs_mistakes(j, -mis)
    assert anti.r == pytest.approx(-1.0)
    flat = overlap_vs_mistakes(j, np.zeros_like(j))
    assert (flat.r, flat.p_value) == (0.0, 1.0)


def test_centrality_by_hand() -> None:
    g = _two_cliques()
    c = centrality(g)
    assert c["d"]["degree"] == 4 and c["d"]["strength"] == pytest.approx(3 * 0.9 + 0.1)
    assert c["b"]["degree_centrality"] == pytest.approx(3 / 7)
