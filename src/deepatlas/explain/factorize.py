"""Coupled non-negative matrix factorisation (Saini & Papalexakis 2021, arXiv:2012.07229).

The input pixels D (pixels x images, one matrix per channel) and each captured layer's
activations A_j (units x images) are factored jointly with a shared image factor F:

    D ~ P F^T,   A_j ~ Q_j F^T,   P, Q_j, F >= 0

minimising sum_k ||X_k - W_k F^T||_F^2 by Lee-Seung multiplicative updates (with an epsilon
in every denominator), which never increase the objective:

    W_k <- W_k * (X_k F) / (W_k F^T F + eps)
    F   <- F * (sum_k X_k^T W_k) / (F sum_k W_k^T W_k + eps)

*Choice*: each X_k is divided by its Frobenius norm before fitting, so a layer with large
activations does not drown the pixels; RMSEs are reported in the original units.
Activations must be non-negative (post-ReLU outputs are).

A_j, as the paper builds it (:func:`activation_matrices`, ``units="maps"``, the default): one
row per neuron, i.e. per position of every feature map of a conv layer (channels x height x
width rows), taken after the layer's pooling when a pooling module follows it; a dense layer
has one row per unit. ``units="channel-means"`` (a variant) reduces each conv filter to its
mean over positions, one row per channel (this package's earlier default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from deepatlas.data.base import Stream
from deepatlas.errors import UsageError
from deepatlas.explain._hooks import capture_outputs
from deepatlas.models.sites import hooks

__all__ = ["UNIT_MODES", "CoupledNMF", "activation_matrices", "coupled_nmf", "spectra"]

#: How a conv layer becomes rows of A_j: every position of every map (the paper) or channel means.
UNIT_MODES = ("maps", "channel-means")

_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool2d,
          nn.AdaptiveMaxPool2d)


@dataclass
class CoupledNMF:
    """Factors and fit of one coupled factorisation.

    Attributes
    ----------
    rank : int
    image_factor : Tensor (images, rank)        F
    loadings : dict name -> Tensor (rows, rank)  P for the pixels, Q_j per layer (original units)
    rmse : dict name -> float                     per matrix, original units
    objective : list of float                     normalised objective after each iteration
    """

    rank: int
    image_factor: torch.Tensor
    loadings: dict[str, torch.Tensor]
    rmse: dict[str, float]
    objective: list[float] = field(default_factory=list)

    @property
    def relative_error(self) -> float:
        """sqrt(mean over matrices of ||X_k - W_k F^T||^2 / ||X_k||^2): the share of the data's
        norm the factors leave unexplained (0 = perfect)."""
        return (self.objective[-1] / max(1, self._matrices)) ** 0.5 if self.objective else float("nan")

    _matrices: int = 0


def coupled_nmf(
    matrices: dict[str, torch.Tensor],
    rank: int,
    *,
    iters: int = 300,
    eps: float = 1e-9,
    seed: int = 0,
    normalize: bool = True,
) -> CoupledNMF:
    """Jointly factor matrices that share their columns (images).

    Parameters
    ----------
    matrices : dict name -> Tensor (rows_k, images), all >= 0, same number of columns
    rank : int
    iters : int, default 300
    eps : float, default 1e-9
    seed : int, default 0
        Seeds the uniform random initialisation.
    normalize : bool, default True
        Divide each matrix by its Frobenius norm first (see the module docstring).

    Returns
    -------
    CoupledNMF

    References
    ----------
    Saini, U. S. & Papalexakis, E. E. (2021), "Analyzing representations inside convolutional
    neural networks", arXiv:2012.07229.
    Lee & Seung (2001), Algorithms for non-negative matrix factorization.
    """
    if rank < 1:
        raise UsageError(f"rank must be >= 1, got {rank}")
    if not matrices:
        raise UsageError("nothing to factor")
    n = {m.shape[1] for m in matrices.values()}
    if len(n) != 1:
        raise UsageError(f"all matrices must share their columns (images); got widths {sorted(n)}")
    cols = n.pop()
    dtype = torch.float64
    xs: dict[str, torch.Tensor] = {}
    scale: dict[str, float] = {}
    for name, m in matrices.items():
        x = m.to(dtype)
        if bool((x < 0).any()):
            raise UsageError(f"matrix {name!r} has negative entries; coupled NMF needs non-negative data")
        s = float(torch.linalg.norm(x)) if normalize else 1.0
        scale[name] = s if s > 0 else 1.0
        xs[name] = x / scale[name]
    g = torch.Generator().manual_seed(seed)
    f = torch.rand(cols, rank, generator=g, dtype=dtype) + 0.1
    ws = {name: torch.rand(x.shape[0], rank, generator=g, dtype=dtype) + 0.1 for name, x in xs.items()}
    objective = []
    for _ in range(iters):
        ftf = f.T @ f
        for name, x in xs.items():
            ws[name] *= (x @ f) / (ws[name] @ ftf + eps)
        num = torch.stack([x.T @ ws[name] for name, x in xs.items()]).sum(0)
        den = f @ torch.stack([w.T @ w for w in ws.values()]).sum(0) + eps
        f *= num / den
        objective.append(float(sum(torch.linalg.norm(x - ws[name] @ f.T) ** 2 for name, x in xs.items())))
    rmse = {name: float(torch.sqrt(((x - ws[name] @ f.T) ** 2).mean())) * scale[name] for name, x in xs.items()}
    loadings = {name: (w * scale[name]).float() for name, w in ws.items()}
    out = CoupledNMF(rank, f.float(), loadings, rmse, objective)
    out._matrices = len(xs) if normalize else 1
    return out


def spectra(matrices: dict[str, torch.Tensor], k: int = 50) -> dict[str, list[float]]:
    """The top ``k`` singular values of each matrix, divided by the largest."""
    out = {}
    for name, m in matrices.items():
        s = torch.linalg.svdvals(m.to(torch.float64))
        out[name] = (s[:k] / s[0].clamp_min(1e-30)).tolist()
    return out


def _pooled_source(model: nn.Module, layer: str, order: list[str]) -> str:
    """The pooling module that runs right after ``layer`` (its pooled output), else ``layer``."""
    modules = dict(model.named_modules())
    if layer in order:
        i = order.index(layer)
        if i + 1 < len(order) and isinstance(modules[order[i + 1]], _POOLS):
            return order[i + 1]
    return layer


@torch.no_grad()
def activation_matrices(
    model: nn.Module,
    inputs: torch.Tensor | Stream,
    layers: list[str],
    *,
    units: str = "maps",
    pooled: bool = True,
    batch_size: int = 500,
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, object]]]:
    """Each layer's activations as a non-negative (rows, images) float64 matrix A_j.

    Parameters
    ----------
    model : nn.Module
    inputs : Tensor (N, C, H, W) already normalised for the model, or a Stream of such batches
    layers : module names (their outputs)
    units : {"maps", "channel-means"}, default "maps"
        "maps": a conv output becomes channels x positions rows (every neuron of every feature
        map, as in the paper); "channel-means": one row per channel (its mean over positions).
    pooled : bool, default True
        With "maps", take the output of the pooling module that runs right after the layer
        when there is one (the paper factors the pooled maps).

    Returns
    -------
    (matrices, info): info[layer] = {"source": module read, "shape": per-image shape, "rows": int}

    References
    ----------
    Saini, U. S. & Papalexakis, E. E. (2021), "Analyzing representations inside convolutional
    neural networks", arXiv:2012.07229 (coupled factorisation of inputs and activations).
    """
    if units not in UNIT_MODES:
        raise UsageError(f"units must be one of {UNIT_MODES}, got {units!r}")
    model.eval()
    order: list[str] = []
    leaves = [n for n, m in model.named_modules() if n and not any(True for _ in m.children())]

    def note(name: str) -> Callable[[nn.Module, Any, Any], None]:
        return lambda _m, _i, _o: order.append(name)

    with hooks(model, forward={n: note(n) for n in leaves}):
        model(inputs[:1] if isinstance(inputs, torch.Tensor) else inputs.take([0]))
    sources = {name: (_pooled_source(model, name, order) if pooled and units == "maps" else name) for name in layers}
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    shapes: dict[str, tuple[int, ...]] = {}
    with capture_outputs(model, sorted(set(sources.values()))) as captured:
        batches = ((inputs[s : s + batch_size] for s in range(0, len(inputs), batch_size)) if isinstance(inputs, torch.Tensor)
                   else (x for x, _ in inputs))
        for x in batches:
            model(x)
            for name, src in sources.items():
                out = captured[src].detach()
                shapes[name] = tuple(out.shape[1:])
                if out.ndim > 2 and units == "channel-means":
                    out = out.flatten(2).mean(2)
                chunks[name].append(out.flatten(1).to(torch.float64).cpu())
    mats = {name: torch.cat(parts).T.clamp_min(0).contiguous() for name, parts in chunks.items()}
    info: dict[str, dict[str, object]] = {name: {"source": sources[name], "shape": list(shapes[name]),
                                                 "rows": int(mats[name].shape[0])} for name in layers}
    return mats, info
