"""Which co-activation pairs become edges: bounded by design, decided row block by row block.

The rules (recorded on the Run as :class:`SparsifyParams`):

1. **Noise floor.** A pair whose |r| does not clear what chance gives at this number of
   images is never a unit-unit edge: with n images, independent (Gaussian) units give
   ``t = r sqrt((n - 2) / (1 - r^2))`` distributed as Student's t with n - 2 degrees of
   freedom; over T tested pairs the floor is the |r| whose two-sided p-value is ``alpha / T``
   (Bonferroni, family-wise ``alpha`` = 0.05 by default). Fisher's z (``atanh(r) sqrt(n - 3)``
   normal) is the large-n form of the same bound; at 30 images it is too low in the far tail
   (measured: 9.5% of null data sets had a pair above it, against 5% promised). 30 images and
   40,000 units give a floor of about 0.89; 10,000 images and 4,000 units about 0.058.
   ``alpha=None`` turns it off.
2. **Each node's picks** (hidden-hidden and class-class pairs of live units above the floor):
   every pair with ``|r| >= min_abs_r``, plus its ``top_k`` strongest; at most ``max_degree``
   of them, the strongest.
3. A pair is kept when either endpoint picks it; then the **degree cap** holds strictly: pairs
   are accepted strongest first while both endpoints have fewer than ``max_degree`` edges
   (a hub keeps its strongest ``max_degree``), and the **run cap** keeps at most
   ``max_edges`` unit-unit pairs, the strongest.
4. **Hidden-class pairs** (what "which neurons drive Sandal" reads): each class keeps its
   ``class_top_k`` live units of largest |r| (no floor: a class's ranking is asked for even
   when weak); ``class_top_k=None`` means every unit while units x classes is at most
   :data:`CLASS_EDGES` (a 10-class model keeps all), else ``CLASS_EDGES / classes`` (at least 64).
5. Dead (constant) units get no pairs at all.

Rules 1, 2 and 4 are decided by one row of the correlation matrix, so the selection runs on
blocks of rows and never needs the M x M matrix whole (each row emits at most ``max_degree``
pairs: the candidates are bounded by M x ``max_degree`` whatever the data); rule 3 runs once on
the merged candidates. :class:`PairCounts` says how many pairs passed each filter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from deepatlas.errors import UsageError

__all__ = [
    "CLASS_EDGES",
    "PairCounts",
    "SparsifyParams",
    "cap_pairs",
    "class_top_k",
    "merge_pairs",
    "noise_floor",
    "pairs_tested",
    "select_block",
    "select_pairs",
]

#: Hidden-class COACTIVATES kept in all while units x classes is at most this (see rule 4).
CLASS_EDGES = 250_000


@dataclass(frozen=True)
class SparsifyParams:
    """Which edges are stored (see the module docstring).

    Attributes
    ----------
    min_abs_r : float, default 0.5
        Pick any unit-unit pair with ``|r| >= min_abs_r`` (above the noise floor); None
        disables the threshold.
    top_k : int, default 8
        Each node also picks its ``top_k`` strongest unit-unit pairs above the floor; 0 disables.
    max_degree : int, default 32
        No node has more unit-unit COACTIVATES edges than this.
    max_edges : int, default 1,000,000
        No run has more unit-unit COACTIVATES edges than this (the strongest are kept).
    alpha : float or None, default 0.05
        Family-wise error rate of the noise floor (:func:`noise_floor`); None: no floor.
    class_top_k : int or None, default None
        Hidden-class edges per class (rule 4); None: automatic.
    pixel_top_k : int, default 16
        Pixel edges kept per unit and class; 0 stores none (``pixel_r`` is always stored).
    influence_top_k : int, default 32
        Neuron->neuron INFLUENCES edges kept per upper unit: its ``influence_top_k`` lower
        units of largest |score|; 0 keeps every pair (the paper's J[l, l+1] in full, which on
        ResNet-18 is a million edges; what a cap keeps: docs/ARCHITECTURE.md). Not a
        co-activation rule: it applies where :func:`deepatlas.ingest.tables.attribution_tables`
        writes the influence rows.
    """

    min_abs_r: float | None = 0.5
    top_k: int = 8
    max_degree: int = 32
    max_edges: int = 1_000_000
    alpha: float | None = 0.05
    class_top_k: int | None = None
    pixel_top_k: int = 16
    influence_top_k: int = 32

    def __post_init__(self) -> None:
        if self.min_abs_r is not None and not 0.0 <= self.min_abs_r <= 1.0:
            raise UsageError(f"min_abs_r must lie in [0, 1], got {self.min_abs_r}")
        if self.top_k < 0 or self.pixel_top_k < 0 or self.influence_top_k < 0:
            raise UsageError("top_k, pixel_top_k and influence_top_k must be >= 0")
        if self.max_degree < 1 or self.max_edges < 1:
            raise UsageError("max_degree and max_edges must be >= 1")
        if self.alpha is not None and not 0.0 < self.alpha < 1.0:
            raise UsageError(f"alpha must lie in (0, 1), got {self.alpha}")
        if self.class_top_k is not None and self.class_top_k < 1:
            raise UsageError(f"class_top_k must be >= 1, got {self.class_top_k}")

    def same_pairs(self, other: SparsifyParams) -> bool:
        """Whether ``other`` chooses the same unit-unit co-activation pairs."""
        keys = ("min_abs_r", "top_k", "max_degree", "max_edges", "alpha", "class_top_k")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


def noise_floor(n: int, tests: int, alpha: float | None = 0.05, *, spearman: bool = False) -> float:
    """The |r| that chance exceeds with probability ``alpha`` over ``tests`` pairs at ``n`` images.

    ``t / sqrt(n - 2 + t^2)`` with t the quantile of Student's t (n - 2 degrees of freedom) at
    ``1 - alpha / (2 tests)``: the exact null distribution of Pearson's r for Gaussian data,
    Bonferroni over the tests. 0 when ``alpha`` is None; 1 (nothing clears it) with 3 or fewer
    images.

    ``spearman``: the floor for Spearman's rho, tanh(z sqrt(1.06 / (n - 3))) with z the normal
    quantile at the same level: Fisher's z of rho has variance about 1.06 / (n - 3) under
    independence (Fieller, Hartley & Pearson 1957, Biometrika 44:470), no Gaussian assumption.

    Examples
    --------
    >>> round(noise_floor(30, 40_000 * 39_999 // 2), 2)
    0.89
    >>> round(noise_floor(10_000, 4_000 * 3_999 // 2), 3)
    0.058
    """
    if alpha is None:
        return 0.0
    if n <= 3:
        return 1.0
    if spearman:
        from scipy.stats import norm

        z = float(norm.isf(alpha / (2 * max(1, tests))))
        return float(math.tanh(z * math.sqrt(1.06 / (n - 3))))
    from scipy.stats import t as student

    t = float(student.isf(alpha / (2 * max(1, tests)), n - 2))
    return float(t / math.sqrt(n - 2 + t * t))


def pairs_tested(is_class: np.ndarray, dead: np.ndarray) -> int:
    """Live same-kind pairs (hidden-hidden plus class-class): the tests the noise floor corrects for."""
    hidden = int((~dead & ~is_class).sum())
    classes = int((~dead & is_class).sum())
    return hidden * (hidden - 1) // 2 + classes * (classes - 1) // 2


def class_top_k(params: SparsifyParams, hidden: int, classes: int) -> int:
    """Hidden-class edges per class under rule 4."""
    if params.class_top_k is not None:
        return min(params.class_top_k, hidden)
    if hidden * classes <= CLASS_EDGES:
        return hidden
    return min(hidden, max(64, CLASS_EDGES // max(1, classes)))


@dataclass
class PairCounts:
    """How many unit-unit pairs passed each filter (summed over the row blocks, then capped).

    Attributes
    ----------
    tested : int
        Live same-kind pairs (hidden-hidden, class-class), each counted once.
    above_floor : int
        Of those, |r| above the noise floor.
    above_min_r : int
        Of those, also ``|r| >= min_abs_r``.
    picked : int
        Pairs some endpoint picked (threshold or top-k, at most ``max_degree`` per node).
    after_degree_cap, kept : int
        After the degree cap, and after the run cap (= stored).
    hidden_class : int
        Hidden-class pairs stored.
    floor : float
        The noise floor's |r|.
    """

    tested: int = 0
    above_floor: int = 0
    above_min_r: int = 0
    picked: int = 0
    after_degree_cap: int = 0
    kept: int = 0
    hidden_class: int = 0
    floor: float = 0.0
    class_top_k: int = 0
    notes: list[str] = field(default_factory=list)


Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]


def select_block(r_rows: np.ndarray, start: int, is_class: np.ndarray, dead: np.ndarray, params: SparsifyParams, *,
                 floor: float = 0.0, per_class: int | None = None, counts: PairCounts | None = None) -> Pairs:
    """The candidate pairs of the rows ``start .. start + len(r_rows)`` of the correlation matrix.

    Rules 1, 2 and 4 of the module docstring (each row: at most ``max_degree`` unit-unit picks,
    and a class row its ``per_class`` units). Pairs are emitted as (min, max); rows may be
    visited in any blocks and any order. Memory: the rows are taken about 4M entries at a
    time, so the temporaries stay near 200 MB whatever the block's size.

    Returns
    -------
    i, j : int64 arrays, i < j
    r : float64 array, ``r_rows`` at each pair
    """
    rows, m = r_rows.shape
    step = max(1, (1 << 22) // max(1, m))
    parts = [_select_rows(r_rows[s : s + step], start + s, is_class, dead, params, floor, per_class, counts)
             for s in range(0, rows, step)]
    return _concat(parts)


def _select_rows(r_rows: np.ndarray, start: int, is_class: np.ndarray, dead: np.ndarray, params: SparsifyParams,
                 floor: float, per_class: int | None, counts: PairCounts | None) -> Pairs:
    rows, m = r_rows.shape
    idx = np.arange(start, start + rows)
    live = ~dead
    a = np.abs(r_rows)
    pair_live = live[idx][:, None] & live[None, :]
    pair_live[np.arange(rows), idx] = False  # no self pairs
    same_kind = is_class[idx][:, None] == is_class[None, :]
    other = pair_live & same_kind
    above = other & (a > floor) if floor > 0 else other
    thresh = above & (a >= params.min_abs_r) if params.min_abs_r is not None else np.zeros_like(above)
    if counts is not None:  # each unordered pair once: count it from its smaller endpoint's row
        upper = np.arange(m)[None, :] > idx[:, None]
        counts.tested += int((other & upper).sum())
        counts.above_floor += int((above & upper).sum())
        counts.above_min_r += int((thresh & upper).sum())
    # rule 2: the threshold pairs plus the top_k, then the strongest max_degree of those
    score = np.where(above, a, -1.0)
    pick = thresh.copy()
    k = min(params.top_k, m - 1)
    if k > 0:
        top = np.argpartition(-score, kth=k - 1, axis=1)[:, :k]
        chosen = np.zeros_like(pick)
        np.put_along_axis(chosen, top, True, axis=1)
        pick |= chosen & (score > -1.0)
    cap = min(params.max_degree, m)
    over = pick.sum(1) > cap
    if over.any():
        sub = np.where(pick[over], a[over], -1.0)
        best = np.argpartition(-sub, kth=cap - 1, axis=1)[:, :cap]
        capped = np.zeros_like(sub, dtype=bool)
        np.put_along_axis(capped, best, True, axis=1)
        pick[over] &= capped
    # rule 4: a class row picks its strongest live hidden units
    row_is_class = is_class[idx]
    if per_class and row_is_class.any():
        hidden = pair_live & ~same_kind & row_is_class[:, None]
        sub = np.where(hidden, a, -1.0)
        kk = min(per_class, m - 1)
        best = np.argpartition(-sub, kth=kk - 1, axis=1)[:, :kk]
        chosen = np.zeros_like(pick)
        np.put_along_axis(chosen, best, True, axis=1)
        pick |= chosen & (sub > -1.0)
    ri, cj = np.nonzero(pick)
    gi = idx[ri]
    return np.minimum(gi, cj).astype(np.int64), np.maximum(gi, cj).astype(np.int64), r_rows[ri, cj].astype(np.float64)


def _concat(parts: list[Pairs]) -> Pairs:
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]))


def merge_pairs(parts: list[Pairs], m: int) -> Pairs:
    """Union of :func:`select_block` outputs: each pair once, in row-major (i, j) order."""
    i, j, r = _concat(parts)
    _, first = np.unique(i * m + j, return_index=True)
    return i[first], j[first], r[first]


def cap_pairs(i: np.ndarray, j: np.ndarray, r: np.ndarray, is_class: np.ndarray, params: SparsifyParams,
              counts: PairCounts | None = None) -> Pairs:
    """Rule 3 on merged candidates: the degree cap (strongest first, both endpoints under
    ``max_degree``) and the run cap (``max_edges``) on the unit-unit pairs; hidden-class pairs
    pass untouched. Returns the kept pairs in row-major (i, j) order."""
    hidden_class = is_class[i] != is_class[j]
    ui, uj, ur = i[~hidden_class], j[~hidden_class], r[~hidden_class]
    if counts is not None:
        counts.picked = len(ui)
        counts.hidden_class = int(hidden_class.sum())
    order = np.lexsort((uj, ui, -np.abs(ur)))  # strongest first; ties by (i, j)
    degree = [0] * len(is_class)
    cap = params.max_degree
    accepted = []
    for pos, a, b in zip(order.tolist(), ui[order].tolist(), uj[order].tolist(), strict=True):
        if degree[a] < cap and degree[b] < cap:  # greedy over at most M x max_degree pairs
            degree[a] += 1
            degree[b] += 1
            accepted.append(pos)
    keep = np.zeros(len(ui), dtype=bool)
    keep[np.asarray(accepted, dtype=np.int64)] = True
    if counts is not None:
        counts.after_degree_cap = int(keep.sum())
    if keep.sum() > params.max_edges:
        strongest = order[keep[order]][: params.max_edges]
        keep[:] = False
        keep[strongest] = True
    if counts is not None:
        counts.kept = int(keep.sum())
    out_i = np.concatenate([ui[keep], i[hidden_class]])
    out_j = np.concatenate([uj[keep], j[hidden_class]])
    out_r = np.concatenate([ur[keep], r[hidden_class]])
    order = np.lexsort((out_j, out_i))
    return out_i[order], out_j[order], out_r[order]


def select_pairs(r: np.ndarray, is_class: np.ndarray, dead: np.ndarray, params: SparsifyParams, *, n: int | None = None,
                 block_rows: int | None = None, counts: PairCounts | None = None) -> Pairs:
    """Every rule of the module docstring on a whole correlation matrix ``r`` (walked in blocks of
    ``block_rows`` rows; default about 4M entries per block). ``n``: the number of images
    behind r (for the noise floor; None: no floor)."""
    m = r.shape[0]
    floor = noise_floor(n, pairs_tested(is_class, dead), params.alpha) if n is not None else 0.0
    per_class = class_top_k(params, int((~is_class).sum()), int(is_class.sum()))
    if counts is not None:
        counts.floor, counts.class_top_k = floor, per_class
    step = block_rows or max(1, (1 << 22) // max(1, m))
    parts = [select_block(r[s : s + step], s, is_class, dead, params, floor=floor, per_class=per_class, counts=counts)
             for s in range(0, m, step)]
    i, j, rv = merge_pairs(parts, m)
    return cap_pairs(i, j, rv, is_class, params, counts)
