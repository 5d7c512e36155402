"""The edge rules of deepatlas.ingest.pairs against a pair-by-pair reference, and the bounds they promise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from deepatlas.ingest.pairs import (
    PairCounts,
    SparsifyParams,
    class_top_k,
    noise_floor,
    pairs_tested,
    select_pairs,
)


def reference_pairs(r: np.ndarray, is_class: np.ndarray, dead: np.ndarray, p: SparsifyParams,
                    n: int | None = None) -> set[tuple[int, int]]:
    """The rules of the module docstring as written, pair by pair (slow, obviously right)."""
    m = len(r)
    live = [i for i in range(m) if not dead[i]]
    same = [(i, j) for i in live for j in live if i < j and is_class[i] == is_class[j]]
    floor = 0.0
    if n is not None and p.alpha is not None:
        # the exact null: r sqrt((n-2)/(1-r^2)) ~ t(n-2); Bonferroni over the same-kind pairs
        t = stats.t.isf(p.alpha / (2 * len(same)), n - 2)
        floor = t / math.sqrt(n - 2 + t * t)

    def picks(i: int) -> set[int]:
        if dead[i]:
            return set()
        above = [j for j in live if j != i and is_class[j] == is_class[i] and abs(r[i, j]) > floor]
        chosen = {j for j in above if p.min_abs_r is not None and abs(r[i, j]) >= p.min_abs_r}
        chosen |= set(sorted(above, key=lambda j: -abs(r[i, j]))[: p.top_k])
        return set(sorted(chosen, key=lambda j: -abs(r[i, j]))[: p.max_degree])

    candidates = {(min(i, j), max(i, j)) for i in range(m) for j in picks(i)}
    degree = dict.fromkeys(range(m), 0)
    kept = []
    for i, j in sorted(candidates, key=lambda e: (-abs(r[e]), e)):
        if degree[i] < p.max_degree and degree[j] < p.max_degree:
            degree[i] += 1
            degree[j] += 1
            kept.append((i, j))
    out = set(kept[: p.max_edges])
    hidden = int((~is_class).sum())
    k = class_top_k(p, hidden, int(is_class.sum()))
    for c in [c for c in live if is_class[c]]:
        units = [u for u in live if not is_class[u]]
        for u in sorted(units, key=lambda u: -abs(r[c, u]))[:k]:
            out.add((min(c, u), max(c, u)))
    return out


def _correlated(m: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, m)) @ rng.standard_normal((m, m)) * 0.4 + rng.standard_normal((n, m))
    return np.corrcoef(x, rowvar=False)


def test_the_noise_floor_is_the_exact_null_bound_and_chance_rarely_clears_it() -> None:
    t = stats.t.isf(0.05 / 2000, 98)
    assert noise_floor(100, 1000) == pytest.approx(t / math.sqrt(98 + t * t), rel=1e-9)
    # Fisher's z is its large-n form
    assert noise_floor(100_000, 1000) == pytest.approx(math.tanh(stats.norm.isf(0.05 / 2000) / math.sqrt(99_997)), rel=1e-3)
    assert noise_floor(3, 10) == 1.0 and noise_floor(50, 10, None) == 0.0
    assert noise_floor(30, 10**8) > noise_floor(300, 10**8) > noise_floor(3000, 10**8)  # more images, lower floor
    # independent units: over 200 data sets of 30 images x 60 units, the share with ANY pair
    # above the floor is the family-wise alpha (Bonferroni: at most 5%)
    rng = np.random.default_rng(0)
    floor = noise_floor(30, 60 * 59 // 2)
    hits = 0
    for _ in range(200):
        r = np.corrcoef(rng.standard_normal((30, 60)), rowvar=False)
        hits += bool((np.abs(r[np.triu_indices(60, 1)]) > floor).any())
    assert hits / 200 <= 0.08
    # and a real correlation of 0.9 over 30 images clears it
    assert 0.9 > floor


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_selection_equals_the_reference_and_keeps_every_bound(seed: int) -> None:
    m = 60
    r = _correlated(m, 120, seed)
    is_class = np.arange(m) >= 54
    dead = np.zeros(m, dtype=bool)
    dead[[3, 55]] = True
    params = SparsifyParams(min_abs_r=0.2, top_k=3, max_degree=5, max_edges=80, class_top_k=7)
    counts = PairCounts()
    i, j, rv = select_pairs(r, is_class, dead, params, n=120, counts=counts, block_rows=11)
    got = set(zip(i.tolist(), j.tolist(), strict=True))
    assert got == reference_pairs(r, is_class, dead, params, n=120)
    assert np.allclose(rv, r[i, j])
    unit_unit = [(a, b) for a, b in got if is_class[a] == is_class[b]]
    degree = np.bincount(np.array(unit_unit).ravel(), minlength=m)
    assert degree.max() <= 5 and len(unit_unit) <= 80  # the degree and run caps hold strictly
    assert counts.kept == len(unit_unit) and counts.tested == pairs_tested(is_class, dead)
    assert counts.tested >= counts.above_floor >= counts.above_min_r and counts.picked >= counts.after_degree_cap >= counts.kept
    per_class = {c: sum(1 for a, b in got if c in (a, b) and is_class[a] != is_class[b]) for c in range(54, 60) if not dead[c]}
    assert set(per_class.values()) == {7}  # each live class keeps its 7 strongest units


def test_class_edges_are_all_units_for_a_small_model_and_capped_for_a_thousand_classes() -> None:
    assert class_top_k(SparsifyParams(), 240, 10) == 240
    assert class_top_k(SparsifyParams(), 40_000, 1000) == 250
    assert class_top_k(SparsifyParams(), 40_000, 10_000) == 64
    assert class_top_k(SparsifyParams(class_top_k=5), 240, 10) == 5


def test_candidates_stay_bounded_when_everything_correlates() -> None:
    # 400 units that all correlate strongly: |r| >= 0.5 everywhere, 80k pairs; each node picks at most max_degree
    rng = np.random.default_rng(0)
    base = rng.standard_normal((500, 1))
    r = np.corrcoef(base + 0.3 * rng.standard_normal((500, 400)), rowvar=False)
    is_class = np.zeros(400, dtype=bool)
    counts = PairCounts()
    i, _, _ = select_pairs(r, is_class, np.zeros(400, dtype=bool), SparsifyParams(), n=500, counts=counts)
    assert counts.above_min_r == 400 * 399 // 2
    assert counts.picked <= 400 * 32 and len(i) <= 400 * 32 // 2
