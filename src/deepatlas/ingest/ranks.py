"""Streaming ranks for Spearman co-activation (``--correlation spearman``).

Spearman's rho is Pearson's r of the mid-ranks (ties share the mean of their ranks). Ranks
are global: a value's rank depends on every image, so ranking each batch on its own is wrong.
Here each variable (unit, class, pixel) gets a :class:`RankSketch`, its marginal distribution
in bounded memory, and every later pass maps values to ranks through it before the usual
co-moments (:class:`~deepatlas.ingest.stats.CoMoments`) see them:

1. **Edges** from a sample: the node values of ``bins`` images spread evenly over the data
   set, sorted per variable; E = ``bins`` of their quantiles become the variable's edges.
2. **Counts**, one pass over all the images: per variable, how many values equal each edge
   exactly (*atoms*: a ReLU's zeros, a pixel's 256 grey levels) and how many fall strictly
   between two edges (*interior*), plus the range and the raw mean/variance.
3. **Ranks**: a value equal to an edge gets the exact mid-rank of its atom; a value inside a
   bin gets the rank linearly interpolated across the bin's interior count.

*Exact* when the data set has at most ``bins`` images (every value is then an edge and an
atom): rho equals scipy's ``spearmanr`` to rounding (tested). Otherwise only interior values
are approximate, each by less than its bin's count c_k, so the rank error of a variable has
root mean square at most e = sqrt(sum_k (c_k / n)^3) (normalised ranks). With s the standard
deviation of a variable's exact normalised mid-ranks (known from the atoms) and a = e / s,
the error in any stored rho is at most

    2 (a_u + a_v + a_u a_v) / ((1 - a_u) (1 - a_v))

(Cauchy-Schwarz on the covariance and on both standard deviations); :attr:`RankSketch.bound`
gives it for the worst pair, and the ingest reports it. Uniform bins give a = sqrt(12) / E, a
bound near 14 / E: 0.007 at the default E = 2048; the measured error is far smaller
(docs/ARCHITECTURE.md).

Accumulator protocol as :class:`CoMoments`: ``update`` / ``all_reduce_`` / ``state_dict``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from deepatlas.ingest.distributed import Dist

__all__ = ["RANK_BINS", "RankSketch"]

#: Edges per variable (and sample images): data sets up to this size get exact ranks.
RANK_BINS = 2048

#: Bytes the sketch holds per variable and edge (edges, atoms, interior counts, rank starts).
BYTES_PER_EDGE = 40

#: Bytes of temporaries per value while a slice of a batch is ranked (float64 copy, bin indices,
#: gathered edges and counts, masks): 153 measured on CPU (peak RSS, 2M values). Counting takes
#: a third of it.
BYTES_PER_VALUE = 160

#: Values (images x variables) counted or ranked at once: a batch is taken a slice of its
#: columns at a time, so the temporaries stay near CHUNK_VALUES x BYTES_PER_VALUE (80 MB).
CHUNK_VALUES = 1 << 19

#: Sample values sorted at once when the edges are built (a slice of columns at a time).
SORT_VALUES = 1 << 22


class RankSketch:
    """The marginal distribution of ``C`` variables, built to turn values into mid-ranks.

    Parameters
    ----------
    sample : torch.Tensor
        (K, C) values of the variables on K images spread over the data set.
    bins : int
        Edges per variable (at most K are used).

    Examples
    --------
    >>> x = torch.tensor([[3.0], [1.0], [1.0], [2.0]])
    >>> sk = RankSketch(x, bins=8)
    >>> sk.update(x)
    >>> sk.finish()
    >>> (sk.transform(x) * 4).flatten().tolist()  # mid-ranks: the two 1s share rank 1.5
    [4.0, 1.5, 1.5, 3.0]
    """

    def __init__(self, sample: torch.Tensor, bins: int = RANK_BINS) -> None:
        if sample.ndim != 2 or sample.shape[0] == 0:
            raise ValueError(f"sample must be (K > 0, C), got {tuple(sample.shape)}")
        k, c = sample.shape
        dev = sample.device
        keep = torch.linspace(0, k - 1, bins, device=dev).round().long() if k > bins else None
        # (C, E), sorted; repeats allowed (an atom takes the first). Sorted a slice of columns at a
        # time in the sample's own dtype (the order and the values are those of float64: the
        # conversion is exact and monotone), so no whole float64 copy of the sample is made.
        self.edges = torch.empty(c, bins if keep is not None else k, dtype=torch.float64, device=dev)
        step = max(1, SORT_VALUES // k)
        for s in range(0, c, step):
            ordered = sample[:, s : s + step].sort(0).values
            self.edges[s : s + step] = (ordered if keep is None else ordered[keep]).T.to(torch.float64)
        e = self.edges.shape[1]
        self.atoms = torch.zeros(c, e, dtype=torch.float64, device=dev)
        self.interior = torch.zeros(c, e + 1, dtype=torch.float64, device=dev)  # bin k lies below edge k
        self.low = torch.full((c,), math.inf, dtype=torch.float64, device=dev)
        self.high = torch.full((c,), -math.inf, dtype=torch.float64, device=dev)
        self.n = 0
        self.mean = torch.zeros(c, dtype=torch.float64, device=dev)
        self.m2 = torch.zeros(c, dtype=torch.float64, device=dev)
        self._start: torch.Tensor | None = None

    @staticmethod
    def bins_for(variables: int, budget_mb: float | None, most: int | None = None) -> int:
        """Edges per variable (at most ``most``, default :data:`RANK_BINS`) that keep ``variables``
        sketches within ``budget_mb`` (at least 64 edges). The ingest passes the co-moments' share
        (``max_matrix_mb``), taken as 64 MB at least: a tiny budget for the matrix should not make
        the ranks coarse. ``inspect``'s plan calls this too, so both choose the same."""
        most = RANK_BINS if most is None else most
        if budget_mb is None:
            return most
        budget_mb = max(64.0, budget_mb)
        return int(max(64, min(most, budget_mb * 2**20 // max(1, variables * BYTES_PER_EDGE))))

    @property
    def n_variables(self) -> int:
        return int(self.edges.shape[0])

    def _locate(self, xt: torch.Tensor, cols: slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For (c, B) values of the variables ``cols``: the first edge >= each, that edge clamped
        into range, and whether the value is that edge (an atom)."""
        edges = self.edges[cols]
        idx = torch.searchsorted(edges, xt)
        at = idx.clamp(max=edges.shape[1] - 1)
        return idx, at, (idx < edges.shape[1]) & (edges.gather(1, at) == xt)

    def _slices(self, batch: int) -> list[slice]:
        """Column slices of about :data:`CHUNK_VALUES` values of a ``batch``-image batch: the
        temporaries of counting and ranking (:data:`BYTES_PER_VALUE`) stay bounded whatever C."""
        step = max(1, CHUNK_VALUES // max(1, batch))
        return [slice(s, s + step) for s in range(0, self.n_variables, step)]

    def _check_width(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.n_variables:
            raise ValueError(f"x must be (B, {self.n_variables}), got {tuple(x.shape)}")

    def update(self, x: torch.Tensor) -> None:
        """Count one batch: ``x`` (B, C)."""
        self._check_width(x)
        b = x.shape[0]
        total = self.n + b
        for cols in self._slices(b):
            xt = x[:, cols].to(self.edges.device, torch.float64).T.contiguous()
            idx, at, atom = self._locate(xt, cols)
            self.atoms[cols].scatter_add_(1, at, atom.to(torch.float64))
            self.interior[cols].scatter_add_(1, idx, (~atom).to(torch.float64))
            self.low[cols] = torch.minimum(self.low[cols], xt.min(1).values)
            self.high[cols] = torch.maximum(self.high[cols], xt.max(1).values)
            mean_b = xt.mean(1)
            m2_b = ((xt - mean_b[:, None]) ** 2).sum(1)
            delta = mean_b - self.mean[cols]
            self.m2[cols] += m2_b + delta**2 * self.n * b / total
            self.mean[cols] += delta * b / total
        self.n = total
        self._start = None

    def all_reduce_(self, dist: Dist) -> RankSketch:
        """Sum the counts over the processes; merge range, mean and variance (Chan et al.)."""
        if dist.world == 1:
            return self
        import torch.distributed as tdist

        for t in (self.atoms, self.interior):
            tdist.all_reduce(t)
        tdist.all_reduce(self.low, op=tdist.ReduceOp.MIN)
        tdist.all_reduce(self.high, op=tdist.ReduceOp.MAX)
        n = torch.tensor([float(self.n)], dtype=torch.float64, device=self.mean.device)
        sums = self.mean * self.n
        tdist.all_reduce(n)
        tdist.all_reduce(sums)
        total = float(n.item())
        mean = sums / max(total, 1.0)
        m2 = self.m2 + self.n * (self.mean - mean) ** 2  # each process's M2 about the global mean
        tdist.all_reduce(m2)
        self.n, self.mean, self.m2 = int(total), mean, m2
        self._start = None
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"edges": self.edges.cpu(), "atoms": self.atoms.cpu(), "interior": self.interior.cpu(),
                "low": self.low.cpu(), "high": self.high.cpu(), "n": self.n, "mean": self.mean.cpu(), "m2": self.m2.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dev = self.edges.device
        for name in ("edges", "atoms", "interior", "low", "high", "mean", "m2"):
            setattr(self, name, state[name].to(dev))
        self.n = int(state["n"])
        self._start = None

    def finish(self) -> None:
        """Cumulative counts in value order: interior_0, atom_0, interior_1, ..., interior_E."""
        c, e = self.atoms.shape
        start = torch.empty(c, 2 * e + 1, dtype=torch.float64, device=self.atoms.device)
        for cols in self._slices(2 * e + 1):  # a slice of variables at a time: no whole-size temporaries
            seg = torch.empty_like(start[cols])
            seg[:, 0::2] = self.interior[cols]
            seg[:, 1::2] = self.atoms[cols]
            start[cols] = torch.cumsum(seg, 1) - seg  # values before each segment
        self._start = start

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised mid-ranks (rank / n, in (0, 1]) of ``x`` (B, C), as float32 on x's device."""
        if self._start is None:
            self.finish()
        assert self._start is not None
        self._check_width(x)
        out = torch.empty(x.shape, dtype=torch.float32, device=self.edges.device)
        e = self.edges.shape[1]
        for cols in self._slices(x.shape[0]):
            xt = x[:, cols].to(self.edges.device, torch.float64).T.contiguous()
            idx, at, atom = self._locate(xt, cols)
            edges, start, low, high = self.edges[cols], self._start[cols], self.low[cols], self.high[cols]
            atom_rank = start.gather(1, 2 * at + 1) + (self.atoms[cols].gather(1, at) + 1) / 2
            lo = torch.where(idx > 0, edges.gather(1, (idx - 1).clamp(min=0)), low[:, None].expand_as(xt))
            hi = torch.where(idx < e, edges.gather(1, at), high[:, None].expand_as(xt))
            width = hi - lo
            frac = torch.where(width > 0, (xt - lo) / width.clamp_min(1e-300), torch.full_like(xt, 0.5)).clamp(0, 1)
            inner_rank = start.gather(1, 2 * idx) + 0.5 + frac * self.interior[cols].gather(1, idx)
            out[:, cols] = (torch.where(atom, atom_rank, inner_rank) / max(1, self.n)).T
        return out.to(x.device)

    @property
    def std(self) -> torch.Tensor:
        """Population standard deviation of the raw values (the node properties keep raw statistics)."""
        return (self.m2 / max(1, self.n)).clamp_min(0).sqrt()

    def rank_error(self) -> torch.Tensor:
        """Per variable, e = sqrt(sum_k (c_k / n)^3): the rms error of its normalised ranks."""
        p = self.interior / max(1, self.n)
        return (p**3).sum(1).sqrt()

    def rank_std(self) -> torch.Tensor:
        """Per variable, the standard deviation of its exact normalised mid-ranks (interior
        values counted as untied): sqrt((n^2 - 1 - sum_atoms (t^3 - t) / n) / 12) / n."""
        n = float(max(1, self.n))
        ties = (self.atoms**3 - self.atoms).sum(1) / n
        return ((n * n - 1 - ties).clamp_min(0) / 12).sqrt() / n

    def bound(self) -> float:
        """The largest error any rho between two of these variables (or with ``other``'s) can have:
        see the module docstring. 0 when every value is an atom; inf when a variable's rank
        error reaches its spread (too few bins for it)."""
        a = worst_ratio(self)
        return pair_bound(a, a)


def pair_bound(a_u: float, a_v: float) -> float:
    """2 (a_u + a_v + a_u a_v) / ((1 - a_u)(1 - a_v)) with a = rank error / rank spread."""
    if a_u >= 1 or a_v >= 1:
        return math.inf
    return 2 * (a_u + a_v + a_u * a_v) / ((1 - a_u) * (1 - a_v))


def worst_ratio(sketch: RankSketch) -> float:
    """max over live variables of e / s (0 when all are exact)."""
    s, err = sketch.rank_std(), sketch.rank_error()
    live = s > 0
    return float((err[live] / s[live]).max()) if bool(live.any()) else 0.0
