"""Small helpers the tests share (not fixtures)."""

from __future__ import annotations

import torch

from deepatlas.data.base import ImageSet


def pixels(data: ImageSet) -> torch.Tensor:
    """Every image of a (small) test set as one float tensor in [0, 1]: for checking values in a
    test only; the library itself never holds a whole data set."""
    return data.take(range(len(data)))
