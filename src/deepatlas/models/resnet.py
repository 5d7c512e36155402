"""torchvision's ResNet-18, adapted to 1-channel 28x28 images and made explicit for deepatlas.

Three changes to ``torchvision.models.resnet18``, both recorded here so the model stays
recognisably torchvision's:

- the stem: a 3x3 stride-1 convolution on ``in_channels`` (torchvision: 7x7 stride 2 on 3
  channels); the 3x3 max-pool is kept, so the four stages see 14, 7, 4 and 2 pixels a side;
- the stem's ReLU is not in-place (an in-place op would rewrite a tensor a hook already took);
- each ``BasicBlock`` becomes a :class:`ResidualBlock` holding *the same* conv/bn/downsample
  modules (the state-dict keys are unchanged) but with every step a module: two ReLU
  modules instead of one shared one, and the residual sum as an :class:`Add` module.

Why: torchvision's block calls one ``relu`` module twice and adds with a functional ``+=``.
deepatlas sees a network through its modules' hooks, so a shared module cannot be captured
(which call is "the" layer?) and a functional addition is invisible to the influential-scores
sweep, which then treats the sum as autograd does (each branch gets the whole signal) rather
than as the paper's addition node (a linear map with weight 1 per input, see
:mod:`deepatlas.explain.influence`). The arithmetic is identical; only the bookkeeping changes.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from deepatlas.models.layers import Add

__all__ = ["ResNet18", "ResidualBlock"]


class ResidualBlock(nn.Module):
    """A torchvision ``BasicBlock`` with its ReLU unshared and its sum an :class:`Add`.

    Attribute names follow torchvision's (``conv1``, ``bn1``, ``conv2``, ``bn2``,
    ``downsample``) so weights load across; ``relu1`` is the block's inner activation and
    ``relu2`` its output.
    """

    def __init__(self, block: BasicBlock) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu1 = block.conv1, block.bn1, nn.ReLU()
        self.conv2, self.bn2 = block.conv2, block.bn2
        self.downsample = block.downsample
        self.add = Add()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu2(self.add(out, identity))


class ResNet18(ResNet):
    """ResNet-18 (torchvision's architecture) for small grey images.

    Parameters
    ----------
    in_channels : int, default 1
    n_classes : int, default 10

    The hidden layers deepatlas captures by default (:meth:`capture_layers`) are the stem's
    ReLU and both ReLUs of each of the eight blocks: 64 + 4*64 + 4*128 + 4*256 + 4*512 =
    3,904 conv units.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 10) -> None:
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=n_classes)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.relu = nn.ReLU()  # torchvision's is in-place, which would overwrite what hooks recorded
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for i, block in enumerate(stage):
                assert isinstance(block, BasicBlock)
                stage[i] = ResidualBlock(block)

    def capture_layers(self) -> list[str]:
        """Module names of the hidden layers, in execution order (see the class docstring)."""
        names = ["relu"]
        for s in range(1, 5):
            for b in range(2):
                names += [f"layer{s}.{b}.relu1", f"layer{s}.{b}.relu2"]
        return names
