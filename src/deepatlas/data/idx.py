"""Reader for the IDX binary format (MNIST, Fashion-MNIST), plain or gzipped."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from deepatlas.errors import DataError

__all__ = ["read_idx"]

# The third byte of the magic number gives the element type.
_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file into an array of the shape its header declares.

    Parameters
    ----------
    path : path
        ``*.gz`` files are decompressed on the fly.

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    DataError
        Missing file, bad magic number, unknown type code, or a body shorter or longer than
        the header's shape (a truncated download).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path} is not a readable gzip file ({exc}); the download is corrupt or truncated") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    code, ndim = raw[2], raw[3]
    if code not in _DTYPES:
        raise DataError(f"{path}: unknown IDX element type 0x{code:02x}")
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise DataError(f"{path} is truncated inside its header")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    body = len(raw) - header_end
    if body != expected:
        raise DataError(
            f"{path} is truncated or padded: header says {shape} ({expected} bytes), file holds {body}"
        )
    return np.frombuffer(raw, dtype, offset=header_end).reshape(shape).copy()
