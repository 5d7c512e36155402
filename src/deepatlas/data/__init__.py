"""Data sets read on demand: :class:`ImageSet` (labels and class names at once, pixels batch by
batch through a DataLoader), opened by ``load_data(spec, split)`` or ``load_dataset(name, split)``.
"""

from __future__ import annotations

from deepatlas.data.base import ArrayReader, Batch, ImageSet, fit_images
from deepatlas.data.digits import load_digits
from deepatlas.data.fashion_mnist import FASHION_CLASSES, default_fashion_dir, load_fashion_mnist
from deepatlas.data.formats import DATA_KINDS, load_data, load_dataset
from deepatlas.data.idx import read_idx

__all__ = [
    "DATA_KINDS",
    "FASHION_CLASSES",
    "ArrayReader",
    "Batch",
    "ImageSet",
    "default_fashion_dir",
    "fit_images",
    "load_data",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "read_idx",
]
