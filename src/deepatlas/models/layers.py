"""Module kinds deepatlas reasons about, shared by capture (ingest) and the attribution rules
(explain), so both layers agree on what counts as an activation or a residual sum."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "NORMS", "Add"]

#: Element-wise activation modules: capture takes the one right after a conv/dense layer as
#: that layer's output; influential scores pass through them. (ReLU6 is a Hardtanh.)
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Softplus,
    nn.Hardswish, nn.Mish, nn.SELU, nn.CELU,
)

#: Normalisation modules: "the activation after a conv" looks past them (conv -> BN -> ReLU).
NORMS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d,
)


class Add(nn.Module):
    """``a + b`` as a module, so hooks (capture, influence rules) can see the sum."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b
