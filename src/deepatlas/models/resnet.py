"""torchvision's ResNet-18 for small grey images: the stock network with a small-image stem.

One change to ``torchvision.models.resnet18``: the stem is a 3x3 stride-1 convolution on
``in_channels`` (torchvision: 7x7 stride 2 on 3 channels); the 3x3 max-pool is kept, so the four
stages see 14, 7, 4 and 2 pixels a side on 28x28 images. The blocks are torchvision's own,
with their one ReLU module called twice and their functional ``out += identity``: deepatlas
captures each call of a shared module as its own layer (``layer1.0.relu#1`` is the block's
inner activation, ``layer1.0.relu#2`` its output, see :mod:`deepatlas.models.sites`) and the
influential-score rules see the functional sum (see :mod:`deepatlas.explain.influence`), so
nothing needs rebuilding. (Until November 2026 the blocks were rebuilt with unshared ReLUs and
an ``Add`` module; the state-dict keys were the same, so those checkpoints load unchanged.)
"""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

__all__ = ["ResNet18"]


class ResNet18(ResNet):
    """ResNet-18 (torchvision's architecture) for small grey images.

    Parameters
    ----------
    in_channels : int, default 1
    n_classes : int, default 10

    The hidden layers deepatlas captures by default are the stem's ReLU and both calls of
    each block's ReLU: 64 + 4*64 + 4*128 + 4*256 + 4*512 = 3,904 conv units.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 10) -> None:
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=n_classes)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
