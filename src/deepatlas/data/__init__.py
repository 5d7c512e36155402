"""Data sets as in-memory image tensors with labels and class names.

``load_dataset(name, split)`` is the one entry point; each loader returns an
:class:`ImageSet`.
"""

from __future__ import annotations

from deepatlas.data.base import ImageSet
from deepatlas.data.digits import load_digits
from deepatlas.data.fashion_mnist import FASHION_CLASSES, default_fashion_dir, load_fashion_mnist
from deepatlas.data.formats import DATA_KINDS, fit_images, load_data, load_dataset
from deepatlas.data.idx import read_idx

__all__ = [
    "DATA_KINDS",
    "FASHION_CLASSES",
    "ImageSet",
    "default_fashion_dir",
    "fit_images",
    "load_data",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "read_idx",
]
