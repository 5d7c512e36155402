"""Which co-activation pairs become edges, decided row block by row block.

The rules (recorded on the Run as :class:`SparsifyParams`):

- every hidden->class pair of two live units is kept (the paper's class queries need them all);
- among the other pairs (hidden-hidden, class-class) a pair is kept when ``|r| >= min_abs_r``
  or when it is among the ``top_k`` strongest (by ``|r|``) pairs of either endpoint;
- dead (constant) units get no pairs at all.

Each rule is decided by one row of the correlation matrix, so the selection runs on blocks of
rows and never needs the M x M matrix whole: :func:`select_pairs` walks a dense matrix in
blocks, and the blockwise co-activation pass (:func:`deepatlas.ingest.compute_coactivation`
with a memory budget) feeds it blocks as they are computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepatlas.errors import UsageError

__all__ = ["SparsifyParams", "merge_pairs", "select_block", "select_pairs"]


@dataclass(frozen=True)
class SparsifyParams:
    """Which co-activation edges are stored (see the module docstring).

    Attributes
    ----------
    min_abs_r : float, default 0.5
        Keep any non-class pair with ``|r| >= min_abs_r``; None disables the threshold.
    top_k : int, default 8
        Keep each node's ``top_k`` strongest non-class pairs; 0 disables.
    pixel_top_k : int, default 16
        Pixel edges kept per unit and class; 0 stores none (``pixel_r`` is always stored).
    influence_top_k : int, default 0
        Neuron->neuron INFLUENCES edges kept per upper unit: its ``influence_top_k`` lower
        units of largest |score|; 0 keeps every pair (the paper's J[l, l+1] in full). Not a
        co-activation rule: it applies where :func:`deepatlas.ingest.tables.attribution_tables`
        writes the influence rows (what it keeps and costs on ResNet-18: docs/ARCHITECTURE.md).
    """

    min_abs_r: float | None = 0.5
    top_k: int = 8
    pixel_top_k: int = 16
    influence_top_k: int = 0

    def __post_init__(self) -> None:
        if self.min_abs_r is not None and not 0.0 <= self.min_abs_r <= 1.0:
            raise UsageError(f"min_abs_r must lie in [0, 1], got {self.min_abs_r}")
        if self.top_k < 0 or self.pixel_top_k < 0 or self.influence_top_k < 0:
            raise UsageError("top_k, pixel_top_k and influence_top_k must be >= 0")

    def same_pairs(self, other: SparsifyParams) -> bool:
        """Whether ``other`` chooses the same unit-unit co-activation pairs (the rules a blockwise pass applies)."""
        return (self.min_abs_r, self.top_k) == (other.min_abs_r, other.top_k)


def select_block(
    r_rows: np.ndarray, start: int, is_class: np.ndarray, dead: np.ndarray, params: SparsifyParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs chosen by the rows ``start .. start + len(r_rows)`` of the correlation matrix.

    Every rule of the module docstring is decided by one row: node i keeps its hidden-class
    pairs, its pairs over the threshold and its own top-k. A pair chosen by either endpoint's
    row is emitted as (min, max), so rows may be visited in any blocks, in any order, and the
    union (:func:`merge_pairs`) is the same. Memory: the rows are taken about 4M entries at a
    time, so the temporaries stay near 200 MB whatever the block's size.

    Returns
    -------
    i, j : int64 arrays, i < j
    r : float64 array, ``r_rows`` at each chosen pair
    """
    rows, m = r_rows.shape
    step = max(1, (1 << 22) // max(1, m))
    if rows > step:
        return merge_pairs([_select_rows(r_rows[s : s + step], start + s, is_class, dead, params)
                            for s in range(0, rows, step)], max(m, start + rows))
    return _select_rows(r_rows, start, is_class, dead, params)


def _select_rows(
    r_rows: np.ndarray, start: int, is_class: np.ndarray, dead: np.ndarray, params: SparsifyParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, m = r_rows.shape
    idx = np.arange(start, start + rows)
    live = ~dead
    a = np.abs(r_rows)
    pair_live = live[idx][:, None] & live[None, :]
    pair_live[np.arange(rows), idx] = False  # no self pairs
    same_kind = is_class[idx][:, None] == is_class[None, :]
    keep = pair_live & ~same_kind  # hidden-class: all of them
    other = pair_live & same_kind
    if params.min_abs_r is not None:
        keep |= other & (a >= params.min_abs_r)
    k = min(params.top_k, m - 1)
    if k > 0:
        masked = np.where(other, a, -1.0)
        top = np.argpartition(-masked, kth=k - 1, axis=1)[:, :k]
        chosen = np.zeros_like(keep)
        np.put_along_axis(chosen, top, True, axis=1)
        keep |= chosen & (masked > -1.0)
    ri, cj = np.nonzero(keep)
    gi = idx[ri]
    return np.minimum(gi, cj).astype(np.int64), np.maximum(gi, cj).astype(np.int64), r_rows[ri, cj].astype(np.float64)


def merge_pairs(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Union of :func:`select_block` outputs: each pair once, in row-major (i, j) order."""
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    i = np.concatenate([p[0] for p in parts])
    j = np.concatenate([p[1] for p in parts])
    r = np.concatenate([p[2] for p in parts])
    _, first = np.unique(i * m + j, return_index=True)
    return i[first], j[first], r[first]


def select_pairs(
    r: np.ndarray, is_class: np.ndarray, dead: np.ndarray, params: SparsifyParams, *, block_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j), i < j, of the co-activation pairs to keep (see module docstring).

    ``r`` is walked in blocks of ``block_rows`` rows (default: about 4M entries per block).
    """
    m = r.shape[0]
    step = block_rows or max(1, (1 << 22) // max(1, m))
    parts = [select_block(r[s : s + step], s, is_class, dead, params) for s in range(0, m, step)]
    i, j, _ = merge_pairs(parts, m)
    return i, j
