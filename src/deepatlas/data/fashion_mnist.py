"""Fashion-MNIST from IDX files (by default Debian's ``dataset-fashion-mnist`` package)."""

from __future__ import annotations

import os
from pathlib import Path

from deepatlas.data.base import ArrayReader, ImageSet
from deepatlas.data.idx import read_idx
from deepatlas.errors import DataError

__all__ = ["FASHION_CLASSES", "default_fashion_dir", "load_fashion_mnist"]

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def default_fashion_dir() -> Path:
    """``$DEEPATLAS_FASHION_DIR`` if set, else the Debian package's directory."""
    env = os.environ.get("DEEPATLAS_FASHION_DIR")
    return Path(env) if env else _DEBIAN_DIR


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    hint = (
        "install it with `apt-get install dataset-fashion-mnist`"
        if directory == _DEBIAN_DIR
        else "pass --data-dir pointing at a folder holding the four IDX files"
    )
    raise DataError(f"Fashion-MNIST file {stem}[.gz] not found in {directory}; {hint}")


def load_fashion_mnist(split: str = "test", *, data_dir: str | Path | None = None) -> ImageSet:
    """Load one split of Fashion-MNIST.

    Parameters
    ----------
    split : {"train", "test"}, default "test"
        60,000 training or 10,000 test images.
    data_dir : path, optional
        Folder with the IDX files (gzipped or not); default :func:`default_fashion_dir`.

    Returns
    -------
    ImageSet
        Images (N, 1, 28, 28) uint8, read on demand; labels int64; the ten class names.

    Raises
    ------
    DataError
        Files missing, truncated, or images and labels that do not match.

    References
    ----------
    Xiao, Rasul & Vollgraf (2017), Fashion-MNIST: a novel image dataset for benchmarking
    machine learning algorithms.
    """
    directory = Path(data_dir) if data_dir is not None else default_fashion_dir()
    image_stem, label_stem = _FILES[split]
    images = read_idx(_find(directory, image_stem))
    labels = read_idx(_find(directory, label_stem))
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"Fashion-MNIST images must be N x 28 x 28; got {images.shape}")
    if labels.shape != (images.shape[0],):
        raise DataError(f"{images.shape[0]} images but {labels.shape[0]} labels in {directory}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"Fashion-MNIST labels must lie in 0..9; found {labels.min()}..{labels.max()}")
    return ImageSet(ArrayReader(images[:, None]), labels.astype("int64"), FASHION_CLASSES, "fashion-mnist", split)
