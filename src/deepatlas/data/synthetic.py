"""The synthetic data sets of the influential-scores paper (Jung, Shin & Kwon).

Each has 10 inputs X and a two-node soft label (Y0, Y1) with Y0 = 1 - Y1:

    two-features  X ~ U(0, 1)^10,  Y1 = 1 / (1 + exp(X0 * X1))
    plus-one      X ~ U(1, 2)^10,  Y1 = 1 / (1 + exp(X0 * X1 - 2))
    orange-skin   X ~ U(1, 2)^10,  Y1 = 1 / (1 + exp(X0^2 + X1^2 + X2^2 + X3^2 - 10))

Only the first 2 (or 4) inputs matter; the rest are noise the model must learn to ignore.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deepatlas.errors import UsageError

__all__ = ["SYNTHETIC", "SyntheticSet", "make_synthetic", "raised_node"]

#: name -> (low, high, relevant inputs)
SYNTHETIC = {"two-features": (0.0, 1.0, 2), "plus-one": (1.0, 2.0, 2), "orange-skin": (1.0, 2.0, 4)}


@dataclass(frozen=True)
class SyntheticSet:
    """Inputs (N, 10), soft labels (N, 2) with columns (Y0, Y1), and the relevant inputs."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    relevant: tuple[int, ...]


def make_synthetic(name: str, n: int, *, seed: int = 0) -> SyntheticSet:
    """Draw ``n`` samples of a synthetic set (float32), seeded.

    Raises
    ------
    UsageError
        Unknown name or n <= 0.
    """
    if name not in SYNTHETIC:
        raise UsageError(f"unknown synthetic set {name!r}; choose one of {', '.join(SYNTHETIC)}")
    if n <= 0:
        raise UsageError(f"n must be positive, got {n}")
    low, high, k = SYNTHETIC[name]
    g = torch.Generator().manual_seed(seed)
    x = low + (high - low) * torch.rand(n, 10, generator=g, dtype=torch.float64)
    if name == "two-features":
        z = x[:, 0] * x[:, 1]
    elif name == "plus-one":
        z = x[:, 0] * x[:, 1] - 2
    else:
        z = (x[:, :4] ** 2).sum(1) - 10
    y1 = torch.sigmoid(-z)  # 1 / (1 + exp(z))
    y = torch.stack([1 - y1, y1], 1)
    return SyntheticSet(name, x.float(), y.float(), tuple(range(k)))


def raised_node(data: SyntheticSet) -> int:
    """The output node whose label the relevant inputs raise: 0 or 1, read off the data (the sign
    of the correlation between the relevant inputs' sum and Y1).

    With the formulas above, raising X0, X1 (X2, X3) raises z and lowers Y1 = 1 / (1 + exp(z)),
    so for all three sets the relevant inputs raise node 0 (Y0 = 1 - Y1). The paper ranks by the
    score "for Y_1", the output the relevant inputs drive; its figures (about 100% on plus-one,
    98% on orange-skin) are reached on this node and never on the other (0%), so this node is
    the paper's Y_1 under its own naming (docs/REPRODUCTION.md).
    """
    rel = data.x[:, list(data.relevant)].double().sum(1)
    y1 = data.y[:, 1].double()
    c = float(((rel - rel.mean()) * (y1 - y1.mean())).mean())
    return 1 if c > 0 else 0
