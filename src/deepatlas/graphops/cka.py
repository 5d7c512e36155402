"""Layer similarity (linear CKA) and unit matching between two models seen on the same images.

Two estimators of linear CKA (Kornblith, Norouzi, Lee & Hinton, "Similarity of Neural Network
Representations Revisited", ICML 2019), both with memory that does not grow with the images:

- **per-channel means** (the graph's units): exact. One pass accumulates the joint covariance
  ``C`` of every unit of both models (:class:`deepatlas.ingest.stats.CoMoments`); for layers
  ``X`` (units a) and ``Y`` (units b), ``CKA = ||C_ab||_F^2 / (||C_aa||_F ||C_bb||_F)``, the same
  number the full-data formula ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on centred
  activations gives (:func:`cka_from_covariance`).
- **flattened maps** (every position of every channel): the minibatch estimator of Nguyen,
  Raghu & Kornblith ("Do Wide and Deep Networks Learn the Same Things?", ICLR 2021): the
  unbiased HSIC of Song et al. (JMLR 2012) on each batch's Gram matrices, averaged over batches,
  then ``CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` (:class:`MinibatchCKA`). It depends on
  the batch size a little (it is an estimate of the population CKA, not the full-data one).

Unit matching follows the convergent-learning studies (Li, Yosinski, Clune, Lipson & Hopcroft,
"Convergent Learning: Do different neural networks learn the same representations?", ICLR
2016): each unit of A is paired with a unit of B by the correlation of their activations over
the same images, one-to-one (the Hungarian assignment maximising the summed r) and one-to-many
(each unit's best partner).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["MinibatchCKA", "UnitMatch", "cka_from_covariance", "linear_cka", "match_units", "unbiased_hsic"]


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two activation matrices over the same n samples, (n, a) and (n, b): the
    textbook full-data formula (a reference for tests; holds everything in memory)."""
    x = x - x.mean(0, keepdims=True)
    y = y - y.mean(0, keepdims=True)
    num = float(np.linalg.norm(y.T @ x) ** 2)
    den = float(np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))
    return num / den if den > 0 else float("nan")


def cka_from_covariance(cov: torch.Tensor, a: slice, b: slice) -> float:
    """Linear CKA of the variables ``a`` and ``b`` from their joint (co)variance matrix ``cov``
    (any common scale: it cancels). NaN when either block is constant."""
    num = float(cov[a, b].double().pow(2).sum())
    den = float(cov[a, a].double().norm() * cov[b, b].double().norm())
    return num / den if den > 0 else float("nan")


def unbiased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
    """Song et al.'s unbiased HSIC of two n x n Gram matrices (n >= 4); a 0-d tensor."""
    n = k.shape[0]
    k = k.clone()
    l = l.clone()  # noqa: E741
    k.fill_diagonal_(0)
    l.fill_diagonal_(0)
    ones = torch.ones(n, 1, dtype=k.dtype, device=k.device)
    kl = (k * l).sum()  # tr(K L) for symmetric K, L
    k1, l1 = k @ ones, l @ ones
    term = kl + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k1 * l1).sum()
    return term / (n * (n - 3))


class MinibatchCKA:
    """Linear CKA between every layer of A and every layer of B on flattened maps, accumulated
    batch by batch (Nguyen et al. 2021). Memory: a few n x n Gram matrices per batch and the
    layers_a x layers_b sums.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> acc = MinibatchCKA(1, 1)
    >>> for _ in range(3):
    ...     x = torch.randn(16, 5, generator=g, dtype=torch.float64)
    ...     acc.update([x], [2 * x])
    >>> round(float(acc.compute()[0, 0]), 6)
    1.0
    """

    def __init__(self, layers_a: int, layers_b: int) -> None:
        self.xy = torch.zeros(layers_a, layers_b, dtype=torch.float64)
        self.xx = torch.zeros(layers_a, dtype=torch.float64)
        self.yy = torch.zeros(layers_b, dtype=torch.float64)
        self.batches = 0

    def update(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> None:
        """One batch: each layer's activations of A and of B, (n, ...) with the same n >= 4."""
        n = xs[0].shape[0]
        if n < 4:
            return  # the unbiased estimator needs four samples; a last batch of fewer is left out
        grams_x = [(f @ f.T) for f in (x.detach().flatten(1).double() for x in xs)]
        grams_y = [(f @ f.T) for f in (y.detach().flatten(1).double() for y in ys)]
        for i, k in enumerate(grams_x):
            self.xx[i] += float(unbiased_hsic(k, k))
            for j, l in enumerate(grams_y):  # noqa: E741
                self.xy[i, j] += float(unbiased_hsic(k, l))
        for j, l in enumerate(grams_y):  # noqa: E741
            self.yy[j] += float(unbiased_hsic(l, l))
        self.batches += 1

    def compute(self) -> torch.Tensor:
        """(layers_a, layers_b) CKA; NaN where a layer is constant over every batch."""
        den = (self.xx.clamp(min=0).sqrt()[:, None] * self.yy.clamp(min=0).sqrt()[None, :])
        out = self.xy / den
        out[den <= 0] = float("nan")
        return out


@dataclass(frozen=True)
class UnitMatch:
    """One layer pair's matching: ``pairs`` (i, j, r) one-to-one by the Hungarian assignment on
    r, and each unit of A's ``best`` partner in B (j, r), one-to-many."""

    pairs: list[tuple[int, int, float]]
    best: list[tuple[int, float]]


def match_units(r: np.ndarray) -> UnitMatch:
    """Match the units of A (rows) to those of B (columns) by their correlation ``r`` (a x b;
    NaN for a dead unit counts as no correlation). One-to-one: the assignment maximising the
    summed r (scipy's ``linear_sum_assignment``); with a != b, min(a, b) pairs."""
    from scipy.optimize import linear_sum_assignment

    clean = np.nan_to_num(np.asarray(r, dtype=np.float64), nan=-1.0)
    rows, cols = linear_sum_assignment(clean, maximize=True)
    pairs = [(int(i), int(j), float(clean[i, j])) for i, j in zip(rows, cols, strict=True)]
    best_j = clean.argmax(1) if clean.shape[1] else np.zeros(clean.shape[0], dtype=int)
    best = [(int(j), float(clean[i, j])) for i, j in enumerate(best_j)] if clean.shape[1] else []
    return UnitMatch(pairs, best)
