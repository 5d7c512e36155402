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

__all__ = ["SYNTHETIC", "SyntheticSet", "make_synthetic"]

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
