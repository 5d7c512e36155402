"""scikit-learn's 8x8 handwritten digits: a second real data set, small enough for tests."""

from __future__ import annotations

import numpy as np

from deepatlas.data.base import ArrayReader, ImageSet
from deepatlas.errors import DataError

__all__ = ["load_digits"]

#: Images with index % 5 == 0 form the test split (a fixed, documented 80/20 split).
_TEST_EVERY = 5


def load_digits(split: str = "test") -> ImageSet:
    """Load the 1,797 8x8 digits shipped with scikit-learn.

    Parameters
    ----------
    split : {"train", "test"}, default "test"
        Every fifth image (index % 5 == 0) is test, the rest train.

    Returns
    -------
    ImageSet
        Images (N, 1, 8, 8) float32 in [0, 1] (the 0..16 grey levels divided by 16).

    Raises
    ------
    DataError
        scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("the digits data set needs scikit-learn: pip install 'deepatlas[digits]'") from exc
    bunch = _sk_load()
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None]
    y = np.asarray(bunch.target, dtype=np.int64)
    idx = np.arange(len(y))
    keep = (idx % _TEST_EVERY == 0) if split == "test" else (idx % _TEST_EVERY != 0)
    return ImageSet(ArrayReader(x[keep]), y[keep], tuple(str(d) for d in range(10)), "digits", split)
