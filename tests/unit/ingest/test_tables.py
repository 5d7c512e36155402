from __future__ import annotations

import numpy as np
import pytest
import torch

from deepatlas.ingest.capture import LayerSpec
from deepatlas.ingest.coactivation import CoactivationResult, SelectedPairs
from deepatlas.ingest.pairs import SparsifyParams, select_pairs
from deepatlas.ingest.stats import Correlation
from deepatlas.ingest.tables import attribution_tables, build_tables
from tests.unit.ingest.test_pairs import reference_pairs

# 4 hidden units (0..3) and 2 classes (4, 5); unit 2 is dead.
R = np.array([
    [1.0, 0.9, 0.0, 0.1, 0.3, -0.2],
    [0.9, 1.0, 0.0, 0.2, 0.1, 0.05],
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.1, 0.2, 0.0, 1.0, 0.4, -0.6],
    [0.3, 0.1, 0.0, 0.4, 1.0, -0.7],
    [-0.2, 0.05, 0.0, -0.6, -0.7, 1.0],
])
IS_CLASS = np.array([False] * 4 + [True] * 2)
DEAD = np.array([False, False, True, False, False, False])


def _pairs(params: SparsifyParams) -> set[tuple[int, int]]:
    i, j, _ = select_pairs(R, IS_CLASS, DEAD, params)
    return set(zip(i.tolist(), j.tolist(), strict=True))


HIDDEN_CLASS = {(0, 4), (0, 5), (1, 4), (1, 5), (3, 4), (3, 5)}


def test_every_live_hidden_class_pair_is_kept_and_dead_units_get_nothing() -> None:
    got = _pairs(SparsifyParams(min_abs_r=1.0, top_k=0))
    assert got == HIDDEN_CLASS  # nothing else reaches |r| >= 1


def test_threshold() -> None:
    assert _pairs(SparsifyParams(min_abs_r=0.5, top_k=0)) == HIDDEN_CLASS | {(0, 1), (4, 5)}
    assert _pairs(SparsifyParams(min_abs_r=0.15, top_k=0)) == HIDDEN_CLASS | {(0, 1), (1, 3), (4, 5)}


def test_top_k_per_node_among_same_kind_pairs() -> None:
    # hidden 0 -> 1 (0.9); 1 -> 0; 3 -> 1 (0.2); classes 4 <-> 5
    assert _pairs(SparsifyParams(min_abs_r=None, top_k=1)) == HIDDEN_CLASS | {(0, 1), (1, 3), (4, 5)}


def _result() -> CoactivationResult:
    m = 6
    corr = Correlation(torch.tensor(R), torch.zeros(m), torch.ones(m), torch.tensor(DEAD), torch.zeros(m), torch.ones(m),
                       torch.tensor(DEAD), 50)
    pr = torch.zeros(4, m, dtype=torch.float64)  # 2x2 image, 4 pixels
    pr[0, 0], pr[3, 0], pr[1, 4] = 0.8, -0.9, 0.5
    pix = Correlation(pr, torch.zeros(4), torch.ones(4), torch.tensor([False, False, False, True]),
                      torch.zeros(m), torch.ones(m), torch.tensor(DEAD), 50)
    conf = torch.tensor([[20, 5], [3, 22]])
    return CoactivationResult((LayerSpec("c", "conv", 2, 1), LayerSpec("d", "dense", 2, 2)), ("A", "B"), corr, pix,
                              conf, (1, 2, 2), 50, "probs")


def _with_pairs(result: CoactivationResult, params: SparsifyParams) -> CoactivationResult:
    """The result as the co-activation pass leaves it: with its pairs chosen by ``params``."""
    assert result.units.r is not None
    result.pairs = SelectedPairs(*select_pairs(result.units.r.numpy(), IS_CLASS, DEAD, params), params)
    return result


def test_tables_from_a_hand_built_result() -> None:
    params = SparsifyParams(min_abs_r=0.5, top_k=0, pixel_top_k=1)
    t = build_tables(_with_pairs(_result(), params), "run@1", params)
    assert t.node_counts() == {"Layer": 4, "Neuron": 4, "Class": 2, "Pixel": 4}
    by = {(e.rel, e.src_label, e.dst_label): e for e in t.edges}
    nn_edges = by[("COACTIVATES", "Neuron", "Neuron")]
    assert list(zip(nn_edges.src[:], nn_edges.dst[:], strict=True)) == [("run@1/n/c/0", "run@1/n/c/1")]
    assert len(by[("COACTIVATES", "Neuron", "Class")]) == 6 and len(by[("COACTIVATES", "Class", "Class")]) == 1
    px = by[("COACTIVATES", "Pixel", "Neuron")]
    # unit 0's strongest pixel by |r| is pixel 3 (r=-0.9), but pixel 3 is dead: pixel 0 wins
    assert px.src[0] == "run@1/px/0/0/0" and px.props["r"][0] == 0.8
    assert "run@1/n/c/2" not in {*px.dst}  # no such unit; the dead unit is d/0
    assert all(d != "run@1/n/d/0" for d in px.dst)
    conf = by[("CONFUSED_WITH", "Class", "Class")]
    assert conf.props["count"].tolist() == [5, 3] and conf.props["rate"].tolist() == [5 / 25, 3 / 25]
    assert [row["b"] for row in conf.rows()] == ["run@1/class/1", "run@1/class/0"]  # rows are made when written
    assert t.neurons[0]["pixel_r"] == [0.8, 0.0, 0.0, -0.9] and t.neurons[2]["dead"] is True
    assert t.edge_counts()["IN_LAYER"] == 6


@pytest.mark.parametrize("block_rows", [1, 3, 7, 40])
def test_any_row_blocking_gives_the_rules_pair_set(block_rows: int) -> None:
    rng = np.random.default_rng(block_rows)
    m = 40
    x = rng.standard_normal((200, m)) @ rng.standard_normal((m, m)) * 0.3 + rng.standard_normal((200, m))
    r = np.corrcoef(x, rowvar=False)  # distinct |r|: no ties for top-k
    is_class = np.arange(m) >= 34
    dead = np.zeros(m, dtype=bool)
    dead[[5, 36]] = True
    for p in (SparsifyParams(), SparsifyParams(min_abs_r=None, top_k=2), SparsifyParams(min_abs_r=0.3, top_k=0),
              SparsifyParams(min_abs_r=0.1, max_degree=4, max_edges=30, class_top_k=5)):
        i, j, _ = select_pairs(r, is_class, dead, p, block_rows=block_rows, n=200)
        assert list(zip(i.tolist(), j.tolist(), strict=True)) == sorted(reference_pairs(r, is_class, dead, p, n=200))


def _reference_attribution(run: str, result: CoactivationResult, gradient: dict, between: dict, k: int) -> list[list[tuple]]:  # type: ignore[type-arg]
    """The rows as the definition reads, one loop per score (slow, obviously right)."""
    dead, j = {}, 0
    for spec in result.layers:
        dead[spec.name] = result.units.dead_x.numpy()[j : j + spec.size]
        j += spec.size
    grad = [(f"{run}/n/{layer}/{i}", f"{run}/class/{c}", round(float(m[c, i]), 7))
            for layer, m in gradient.items() for c in range(m.shape[0]) for i in range(m.shape[1])
            if not dead[layer][i] and m[c, i] != 0]
    betw = []
    for (lo, up), m in between.items():
        for u in range(m.shape[1]):
            live = [i for i in range(m.shape[0]) if not dead[lo][i] and not dead[up][u] and m[i, u] != 0]
            for i in sorted(live, key=lambda i: -abs(m[i, u]))[: k or None]:
                betw.append((f"{run}/n/{lo}/{i}", f"{run}/n/{up}/{u}", round(float(m[i, u]), 7)))
    return [grad, betw]


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_attribution_rows_follow_the_definition_and_influence_top_k_keeps_each_upper_units_strongest(k: int) -> None:
    result = _result()  # layers c (units c/0, c/1) and d (d/0 dead, d/1)
    rng = np.random.default_rng(k)
    gradient = {"c": rng.normal(size=(2, 2)).astype(np.float32), "d": rng.normal(size=(2, 2)).astype(np.float32)}
    gradient["c"][1, 0] = 0.0  # exact zeros are not stored
    between = {("c", "d"): rng.normal(size=(2, 2)), ("d", "c"): rng.normal(size=(2, 2)), ("c", "c"): rng.normal(size=(2, 2))}
    between[("c", "c")][1, 0] = 0.0
    tables = attribution_tables("run@1", result, gradient=gradient, between=between, influence_top_k=k)
    got = [sorted((row["a"], row["b"], row["pg" if t.rel == "GRADIENT" else "score"]) for row in t.rows()) for t in tables]
    assert got == [sorted(rows) for rows in _reference_attribution("run@1", result, gradient, between, k)]
    assert all("/n/d/0" not in (a, b) for rows in got for a, b, _ in rows)  # the dead unit has no edges
    if k == 1:  # each live upper unit of each pair keeps exactly one lower unit
        assert len(got[1]) == 2 + 2 + 1
