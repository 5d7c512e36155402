"""Class neuron sets, their Jaccard overlap, and its relation to the model's mistakes.

Horta & Mileo's third analysis: classes whose sets of most-correlated neurons overlap more are
the classes the model confuses more. Here every step is explicit and parameterised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from deepatlas.errors import UsageError

__all__ = ["OverlapStats", "class_neuron_sets", "jaccard_matrix", "mistakes_matrix", "overlap_vs_mistakes"]


def class_neuron_sets(r: np.ndarray, *, top_k: int | None = 10, min_r: float | None = None) -> list[set[int]]:
    """Each class's neuron set from an (n_hidden, n_classes) correlation matrix.

    Parameters
    ----------
    r : ndarray (n_hidden, n_classes)
        Pearson r of every hidden neuron with every class.
    top_k : int or None, default 10
        The ``top_k`` neurons with the highest (positive) r; ties broken by lower index.
    min_r : float or None, default None
        Only neurons with r >= ``min_r``. With both, a neuron must pass both.

    Returns
    -------
    list of set of int
        Neuron indices (rows of ``r``) per class.
    """
    if top_k is None and min_r is None:
        raise UsageError("give top_k, min_r or both to define a class's neuron set")
    if top_k is not None and top_k <= 0:
        raise UsageError(f"top_k must be positive, got {top_k}")
    sets = []
    for c in range(r.shape[1]):
        col = r[:, c]
        order = np.lexsort((np.arange(len(col)), -col))  # by r desc, then index asc
        candidates = order[:top_k] if top_k is not None else order
        if min_r is not None:
            sets.append({int(i) for i in candidates if col[i] >= min_r})
        else:
            sets.append({int(i) for i in candidates if col[i] > 0})
    return sets


def jaccard_matrix(sets: list[set[int]]) -> np.ndarray:
    """J[a, b] = |A & B| / |A | B| (0 when both are empty); J[a, a] = 1 for a non-empty set.

    Computed from the sparse class x neuron incidence matrix S: |A & B| = (S S^T)[a, b], so
    1,000 classes (499,500 pairs) take a sparse product, not a million set operations.
    """
    from scipy import sparse

    n = len(sets)
    rows = np.repeat(np.arange(n), [len(s) for s in sets])
    cols = np.fromiter((i for s in sets for i in sorted(s)), dtype=np.int64, count=len(rows))
    width = int(cols.max()) + 1 if len(cols) else 1
    inc = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, width))
    inter = (inc @ inc.T).toarray()
    size = np.array([len(s) for s in sets], dtype=np.float64)
    union = size[:, None] + size[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def mistakes_matrix(confusion: np.ndarray) -> np.ndarray:
    """M[a, b] = images of a predicted as b plus b predicted as a (symmetric, zero diagonal)."""
    c = np.asarray(confusion)
    m = c + c.T
    np.fill_diagonal(m, 0)
    return m


@dataclass(frozen=True)
class OverlapStats:
    """Pearson correlation between pairwise Jaccard and pairwise mistakes over class pairs."""

    r: float
    p_value: float
    n_pairs: int


def overlap_vs_mistakes(jaccard: np.ndarray, mistakes: np.ndarray) -> OverlapStats:
    """Correlate the upper triangles (each unordered pair of classes once).

    Returns r = 0, p = 1 when either side is constant (correlation undefined).
    """
    iu = np.triu_indices(jaccard.shape[0], k=1)
    x, y = jaccard[iu].astype(float), mistakes[iu].astype(float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return OverlapStats(0.0, 1.0, len(x))
    res = stats.pearsonr(x, y)
    return OverlapStats(float(res.statistic), float(res.pvalue), len(x))
