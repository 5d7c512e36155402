"""Reference architectures.

:class:`FashionCNN` follows the shape of the network in Horta & Mileo's co-activation paper:
three convolution layers, each followed by ReLU and 2x2 max-pooling, then two dense layers.
Widths are chosen so that training reaches >= 90% test accuracy on Fashion-MNIST within a few
minutes on two CPU cores (see docs/REPRODUCTION.md for the figures measured).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepatlas.errors import CheckpointError
from deepatlas.models.resnet import ResNet18

__all__ = ["ARCHITECTURES", "MLP", "FashionCNN", "build_model"]


class FashionCNN(nn.Module):
    """conv(c1)-pool-conv(c2)-pool-conv(c3)-pool-dense(hidden)-dense(n_classes).

    Parameters
    ----------
    in_channels : int, default 1
    n_classes : int, default 10
    widths : tuple of int, default (16, 32, 64)
        Filters of the three conv layers (3x3, padding 1).
    hidden : int, default 128
        Units of the first dense layer.
    input_size : int, default 28
        Height = width of the input images.

    Notes
    -----
    Module names (``conv1``, ``relu1``, ..., ``fc1``, ``relu4``, ``fc2``) are what
    ``--layers`` refers to. The forward pass returns logits.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 10,
        widths: tuple[int, int, int] = (16, 32, 64),
        hidden: int = 128,
        input_size: int = 28,
    ) -> None:
        super().__init__()
        c1, c2, c3 = widths
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.pool3 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        side = input_size // 8
        if side < 1:
            raise ValueError(f"input_size must be at least 8, got {input_size}")
        self.fc1 = nn.Linear(c3 * side * side, hidden)
        self.relu4 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.pool3(self.relu3(self.conv3(x)))
        return self.fc2(self.relu4(self.fc1(self.flatten(x))))


class MLP(nn.Module):
    """Flatten, then dense layers with ReLU between them (``fc1``, ``relu1``, ..., ``out``).

    Parameters
    ----------
    in_features : int
    hidden : tuple of int, default (64,)
    n_classes : int, default 10
    """

    def __init__(self, in_features: int, hidden: tuple[int, ...] = (64,), n_classes: int = 10) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        width = in_features
        for i, h in enumerate(hidden, start=1):
            self.add_module(f"fc{i}", nn.Linear(width, h))
            self.add_module(f"relu{i}", nn.ReLU())
            width = h
        self.out = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x


#: Architecture name -> constructor. Checkpoints record the name and the keyword arguments.
ARCHITECTURES: dict[str, type[nn.Module]] = {"fashion_cnn": FashionCNN, "mlp": MLP, "resnet18": ResNet18}


def build_model(arch: str, config: dict[str, Any]) -> nn.Module:
    """Instantiate a registered architecture from its recorded keyword arguments.

    Raises
    ------
    CheckpointError
        Unknown architecture or arguments it does not accept.
    """
    if arch not in ARCHITECTURES:
        raise CheckpointError(
            f"unknown architecture {arch!r}; deepatlas knows: {', '.join(sorted(ARCHITECTURES))}"
        )
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    try:
        return ARCHITECTURES[arch](**kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot build {arch} from {config}: {exc}") from exc
