"""Streaming statistics: co-moments for Pearson correlation, and the confusion matrix.

Both follow the accumulator protocol ``update(batch)`` / ``merge(other)`` / ``compute()``;
neither holds more than its running sums, so an N x M activation matrix never exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from deepatlas.errors import IngestError

if TYPE_CHECKING:
    from deepatlas.ingest.distributed import Dist

__all__ = ["CoMoments", "Confusion", "Correlation"]


@dataclass(frozen=True)
class Correlation:
    """Pearson correlation of every x-variable with every y-variable.

    Attributes
    ----------
    r : torch.Tensor or None
        (Mx, My); 0 wherever either variable is dead (constant), never NaN. None where only
        the per-variable statistics were kept (a blockwise co-activation pass).
    mean_x, std_x, mean_y, std_y : torch.Tensor
        Population standard deviations (divided by n).
    dead_x, dead_y : torch.Tensor
        bool masks of constant variables.
    n : int
    """

    r: torch.Tensor | None
    mean_x: torch.Tensor
    std_x: torch.Tensor
    dead_x: torch.Tensor
    mean_y: torch.Tensor
    std_y: torch.Tensor
    dead_y: torch.Tensor
    n: int


class CoMoments:
    """Running means and centred cross-products of two blocks of variables.

    Each batch is centred on its own mean and folded in with Chan et al.'s pairwise update,
    ``C = C_a + C_b + (mu_a - mu_b)(nu_a - nu_b)^T n_a n_b / n``, so the result does not
    depend on batch size or order (up to rounding) and stays accurate in float32. The
    batch's cross-product is one GEMM on the batch's device.

    Parameters
    ----------
    dim_x : int
    dim_y : int, optional
        Omit for the symmetric case (x against itself): one GEMM per batch, not two.
    dtype : torch.dtype, default torch.float64
    device : str or torch.device, default "cpu"
    dead_tol : float, default 1e-6
        A variable is dead (constant) when its std <= dead_tol * |mean|: relative to its own
        level, so a unit whose values are all tiny but vary is alive (its r is as good as any),
        and a constant one is dead at any level, up to float32 rounding of its values (1e-6 is
        about 8 float32 epsilons).

    Examples
    --------
    >>> acc = CoMoments(3)
    >>> g = torch.Generator().manual_seed(0)
    >>> for _ in range(4):
    ...     acc.update(torch.randn(50, 3, generator=g, dtype=torch.float64))
    >>> acc.compute().r.shape
    torch.Size([3, 3])

    References
    ----------
    Chan, Golub & LeVeque (1979), Updating formulae and a pairwise algorithm for computing
    sample variances. Horta, V. A. C. & Mileo, A. (2019), "Towards Explaining Deep Neural
    Networks Through Graph Analysis", DEXA 2019 workshops, CCIS 1062, Springer,
    doi:10.1007/978-3-030-27684-3_20 (Pearson co-activation).
    """

    def __init__(
        self,
        dim_x: int,
        dim_y: int | None = None,
        *,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
        dead_tol: float = 1e-6,
    ) -> None:
        self.symmetric = dim_y is None
        self.dim_x = dim_x
        self.dim_y = dim_x if dim_y is None else dim_y
        self.dtype = dtype
        self.device = torch.device(device)
        self.dead_tol = dead_tol
        self._spent = False
        self.n = 0
        self.mean_x = torch.zeros(dim_x, dtype=dtype, device=self.device)
        self.m2_x = torch.zeros(dim_x, dtype=dtype, device=self.device)
        self.mean_y = self.mean_x if self.symmetric else torch.zeros(self.dim_y, dtype=dtype, device=self.device)
        self.m2_y = self.m2_x if self.symmetric else torch.zeros(self.dim_y, dtype=dtype, device=self.device)
        self.cxy = torch.zeros(dim_x, self.dim_y, dtype=dtype, device=self.device)

    def update(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Fold in one batch: ``x`` (B, dim_x) and, unless symmetric, ``y`` (B, dim_y)."""
        if self.symmetric and y is not None:
            raise IngestError("symmetric CoMoments takes only x")
        if not self.symmetric and y is None:
            raise IngestError("CoMoments over two blocks needs y")
        x = x.to(self.device, self.dtype)
        if x.ndim != 2 or x.shape[1] != self.dim_x:
            raise IngestError(f"expected x of shape (B, {self.dim_x}), got {tuple(x.shape)}")
        nb = x.shape[0]
        if self._spent:
            raise IngestError("this accumulator was computed in place; its co-moments are gone")
        if nb == 0:
            return
        mx = x.mean(0)
        xc = x - mx
        if self.symmetric:
            my, yc = mx, xc
        else:
            assert y is not None
            y = y.to(self.device, self.dtype)
            if y.ndim != 2 or y.shape != (nb, self.dim_y):
                raise IngestError(f"expected y of shape ({nb}, {self.dim_y}), got {tuple(y.shape)}")
            my = y.mean(0)
            yc = y - my
        # Chan's merge, written into the accumulators: the batch's cross-products go straight
        # into cxy (one GEMM, no dim_x x dim_y temporary), then the rank-1 mean correction
        n = self.n + nb
        w = self.n * nb / n
        dx = mx - self.mean_x
        dy = dx if self.symmetric else my - self.mean_y
        self.cxy.addmm_(xc.T, yc)
        if self.n:
            self.cxy.addr_(dx, dy, alpha=w)
        self.m2_x += (xc * xc).sum(0) + dx * dx * w
        self.mean_x += dx * (nb / n)
        if self.symmetric:
            self.mean_y, self.m2_y = self.mean_x, self.m2_x
        else:
            self.m2_y += (yc * yc).sum(0) + dy * dy * w
            self.mean_y += dy * (nb / n)
        self.n = n

    def merge(self, other: CoMoments) -> CoMoments:
        """Fold another accumulator of the same shape into this one; return self."""
        if (other.dim_x, other.dim_y, other.symmetric) != (self.dim_x, self.dim_y, self.symmetric):
            raise IngestError("cannot merge CoMoments of different shapes")
        if other.n:
            self._fold(_Block(other.n, other.mean_x.to(self.device, self.dtype), other.m2_x.to(self.device, self.dtype),
                              other.mean_y.to(self.device, self.dtype), other.m2_y.to(self.device, self.dtype),
                              other.cxy.to(self.device, self.dtype)))
        return self

    def _fold(self, b: _Block) -> None:
        if self.n == 0:
            self.n = b.n
            self.mean_x, self.m2_x, self.cxy = b.mean_x.clone(), b.m2_x.clone(), b.cxy.clone()
            self.mean_y, self.m2_y = (self.mean_x, self.m2_x) if self.symmetric else (b.mean_y.clone(), b.m2_y.clone())
            return
        n = self.n + b.n
        w = self.n * b.n / n
        dx = b.mean_x - self.mean_x
        dy = dx if self.symmetric else b.mean_y - self.mean_y
        self.cxy += b.cxy
        self.cxy.addr_(dx, dy, alpha=w)
        self.m2_x += b.m2_x + dx * dx * w
        self.mean_x += dx * (b.n / n)
        if self.symmetric:
            self.mean_y, self.m2_y = self.mean_x, self.m2_x
        else:
            self.m2_y += b.m2_y + dy * dy * w
            self.mean_y += dy * (b.n / n)
        self.n = n

    def state_dict(self) -> dict[str, Any]:
        """The running sums (for a checkpoint), on the CPU."""
        state: dict[str, Any] = {"n": self.n, "mean_x": self.mean_x.cpu(), "m2_x": self.m2_x.cpu(), "cxy": self.cxy.cpu()}
        if not self.symmetric:
            state.update(mean_y=self.mean_y.cpu(), m2_y=self.m2_y.cpu())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (same shape)."""
        if tuple(state["cxy"].shape) != (self.dim_x, self.dim_y):
            raise IngestError(f"checkpointed co-moments are {tuple(state['cxy'].shape)}, expected {(self.dim_x, self.dim_y)}")
        self.n = int(state["n"])
        self.mean_x.copy_(state["mean_x"])
        self.m2_x.copy_(state["m2_x"])
        self.cxy.copy_(state["cxy"])
        if not self.symmetric:
            self.mean_y.copy_(state["mean_y"])
            self.m2_y.copy_(state["m2_y"])

    def all_reduce_(self, dist: Dist) -> CoMoments:
        """Merge the accumulators of every torch.distributed process into each, in place.

        Exact, by the parallel-axis identity: with the global means mu, nu,
        ``C = sum_r [C_r + n_r (mu_r - mu)(nu_r - nu)^T]``; each process shifts its own
        co-moments to the global means, then one sum (all-reduce) of C and of the variances.
        """
        if dist.world == 1:
            return self
        n_r = float(self.n)
        n = dist.total(n_r)
        if n == 0:
            return self
        mean_x = dist.all_reduce_(self.mean_x * n_r) / n
        dx = self.mean_x - mean_x
        if self.symmetric:
            mean_y, dy = mean_x, dx
        else:
            mean_y = dist.all_reduce_(self.mean_y * n_r) / n
            dy = self.mean_y - mean_y
        if n_r:
            self.cxy.addr_(dx, dy, alpha=n_r)
        self.m2_x += dx * dx * n_r
        dist.all_reduce_(self.cxy)
        dist.all_reduce_(self.m2_x)
        self.mean_x = mean_x
        if self.symmetric:
            self.mean_y, self.m2_y = self.mean_x, self.m2_x
        else:
            self.m2_y += dy * dy * n_r
            dist.all_reduce_(self.m2_y)
            self.mean_y = mean_y
        self.n = round(n)
        return self

    def compute(self, *, inplace: bool = False) -> Correlation:
        """Pearson r with dead (constant) variables set to 0 and flagged.

        ``inplace=True`` turns the co-moment matrix itself into r (no second dim_x x dim_y
        matrix; the accumulator cannot be updated afterwards): what a memory budget needs.
        """
        if self._spent:
            raise IngestError("this accumulator was computed in place; its co-moments are gone")
        if self.n < 2:
            raise IngestError(f"correlation needs at least 2 samples, got {self.n}")
        var_x = (self.m2_x / self.n).clamp_min(0)
        var_y = (self.m2_y / self.n).clamp_min(0)
        std_x, std_y = var_x.sqrt(), var_y.sqrt()
        dead_x = std_x <= self.dead_tol * self.mean_x.abs()
        dead_y = std_y <= self.dead_tol * self.mean_y.abs()
        sx = torch.where(dead_x, torch.ones_like(std_x), std_x) * self.n**0.5
        sy = torch.where(dead_y, torch.ones_like(std_y), std_y) * self.n**0.5
        r = self.cxy if inplace else self.cxy.clone()
        self._spent = inplace  # cxy now holds r: update() and compute() refuse from now on
        r.div_(sx[:, None]).div_(sy[None, :]).clamp_(-1.0, 1.0)
        r[dead_x, :] = 0.0
        r[:, dead_y] = 0.0
        if self.symmetric:
            _symmetrize_(r)
            r.diagonal().copy_((~dead_x).to(r.dtype))
        return Correlation(r, self.mean_x.clone(), std_x, dead_x, self.mean_y.clone(), std_y, dead_y, self.n)

def _symmetrize_(r: torch.Tensor, rows: int = 1024) -> None:
    """r <- (r + r.T) / 2 in place, a band of rows at a time (temporaries rows x M, not M x M)."""
    m = r.shape[0]
    for s in range(0, m, rows):
        e = min(s + rows, m)
        upper, lower = r[s:e, s:], r[s:, s:e]
        avg = (upper + lower.T) / 2
        upper.copy_(avg)
        lower.copy_(avg.T)


@dataclass(frozen=True)
class _Block:
    n: int
    mean_x: torch.Tensor
    m2_x: torch.Tensor
    mean_y: torch.Tensor
    m2_y: torch.Tensor
    cxy: torch.Tensor


class Confusion:
    """Streaming confusion matrix: ``counts[true, predicted]``.

    Parameters
    ----------
    n_classes : int
    device : str or torch.device, default "cpu"
    """

    def __init__(self, n_classes: int, *, device: str | torch.device = "cpu") -> None:
        self.n_classes = n_classes
        self.counts = torch.zeros(n_classes * n_classes, dtype=torch.int64, device=torch.device(device))

    def update(self, predicted: torch.Tensor, labels: torch.Tensor) -> None:
        idx = labels.to(self.counts.device) * self.n_classes + predicted.to(self.counts.device)
        self.counts += torch.bincount(idx, minlength=self.n_classes**2)

    def merge(self, other: Confusion) -> Confusion:
        self.counts += other.counts.to(self.counts.device)
        return self

    def all_reduce_(self, dist: Dist) -> Confusion:
        """Sum the counts of every torch.distributed process into each."""
        dist.all_reduce_(self.counts)
        return self

    def compute(self) -> torch.Tensor:
        """(n_classes, n_classes) int64 on the CPU."""
        return self.counts.view(self.n_classes, self.n_classes).cpu()
