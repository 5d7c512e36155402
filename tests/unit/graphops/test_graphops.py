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


def _planted(seed: int) -> tuple[nx.Graph, list[set[int]]]:
    """Four planted groups of 30 (p_in 0.5, p_out 0.02) with random weights in [0.5, 1]."""
    g = nx.planted_partition_graph(4, 30, 0.5, 0.02, seed=seed)
    rng = np.random.default_rng(seed)
    for a, b in g.edges:
        g.edges[a, b]["weight"] = float(rng.uniform(0.5, 1.0))
    g = nx.relabel_nodes(g, {i: f"u{i:03d}" for i in g.nodes})
    return g, [set(range(k * 30, (k + 1) * 30)) for k in range(4)]


@pytest.mark.parametrize("algorithm", ["leiden", "igraph", "python-louvain"])
def test_each_backend_recovers_planted_groups_with_networkx_modularity(algorithm: str) -> None:
    g, planted = _planted(7)
    part = louvain(g, seed=1, algorithm=algorithm)
    found = [{int(n[1:]) for n in c} for c in part.communities]
    assert sorted(map(sorted, found)) == sorted(map(sorted, planted))
    want = nx.community.modularity(g, part.communities, weight="weight")
    assert abs(part.modularity - want) < 1e-9
    assert louvain(g, seed=1, algorithm=algorithm).membership == part.membership  # seeded: the same again
    assert set(part.membership.values()) == set(range(4))
    sizes = [len(c) for c in part.communities]
    assert sizes == sorted(sizes, reverse=True)


def test_backends_agree_on_modularity_and_seeds_matter() -> None:
    # a weaker planting: partitions differ, modularity stays within 0.01 of python-louvain's
    g = nx.planted_partition_graph(6, 40, 0.25, 0.05, seed=3)
    rng = np.random.default_rng(3)
    for a, b in g.edges:
        g.edges[a, b]["weight"] = float(rng.uniform(0.1, 1.0))
    q = {a: louvain(g, seed=0, algorithm=a).modularity for a in ("leiden", "igraph", "python-louvain")}
    assert q["leiden"] >= q["python-louvain"] - 0.01 and q["igraph"] >= q["python-louvain"] - 0.01
    runs = {tuple(sorted(louvain(g, seed=s, algorithm="igraph").membership.items())) for s in range(6)}
    assert len(runs) > 1  # the seed reaches igraph's generator
    with pytest.raises(UsageError, match="algorithm must be one of"):
        louvain(g, algorithm="girvan-newman")


def test_leiden_communities_are_connected() -> None:
    g, _ = _planted(11)
    g.add_edge("u000", "u119", weight=0.01)
    for c in louvain(g, seed=0, algorithm="leiden").communities:
        assert nx.is_connected(g.subgraph(c))


@pytest.mark.parametrize("algorithm", ["leiden", "igraph", "python-louvain"])
def test_communities_from_rows_equal_louvain_on_the_graph_whatever_the_row_order(algorithm: str) -> None:
    import random

    from deepatlas.graphops import coactivation_graph, communities, louvain

    rng = np.random.default_rng(0)
    keys = [f"n{i:03d}" for i in range(60)]
    groups = np.repeat(np.arange(4), 15)
    rows = [(keys[i], keys[j], float(np.clip((0.7 if groups[i] == groups[j] else -0.1) + rng.normal(0, 0.2), -1, 1)))
            for i in range(60) for j in range(i + 1, 60)]
    want = louvain(coactivation_graph([{"key": k} for k in keys], rows), seed=3, algorithm=algorithm)
    got, n_edges = communities(keys, rows, seed=3, algorithm=algorithm)
    assert n_edges == sum(1 for _, _, r in rows if r > 0)
    assert got.modularity == pytest.approx(want.modularity, abs=1e-12)
    if algorithm != "python-louvain":  # the C backends see one sorted igraph: any row order, one answer
        assert got.membership == want.membership
        shuffled = rows[:]
        random.Random(1).shuffle(shuffled)
        assert communities(keys, shuffled, seed=3, algorithm=algorithm)[0].membership == got.membership
    assert len(got.communities) == 4 and {frozenset(c) for c in got.communities} == {
        frozenset(keys[g * 15:(g + 1) * 15]) for g in range(4)}
