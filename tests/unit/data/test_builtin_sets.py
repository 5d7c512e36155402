from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from deepatlas.data import FASHION_CLASSES, load_dataset, load_digits, load_fashion_mnist, read_idx
from deepatlas.errors import DataError, UsageError
from tests.helpers import pixels


def _write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    payload = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def test_idx_round_trip_plain_and_gzip(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(_write_idx(tmp_path / "a", arr)), arr)
    assert np.array_equal(read_idx(_write_idx(tmp_path / "a.gz", arr, gz=True)), arr)


def test_idx_truncated_body_is_refused(tmp_path: Path) -> None:
    p = _write_idx(tmp_path / "t", np.zeros((5, 4, 4), np.uint8))
    p.write_bytes(p.read_bytes()[:-7])
    with pytest.raises(DataError, match="truncated"):
        read_idx(p)


def test_idx_bad_magic_and_bad_gzip(tmp_path: Path) -> None:
    (tmp_path / "m").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(DataError, match="magic"):
        read_idx(tmp_path / "m")
    (tmp_path / "g.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="gzip"):
        read_idx(tmp_path / "g.gz")


def test_fashion_test_split_is_the_real_data(fashion_test) -> None:  # type: ignore[no-untyped-def]
    assert len(fashion_test) == 10_000 and fashion_test.input_shape == (1, 28, 28)
    x = fashion_test.take(range(0, 10_000, 97))  # read on demand: a sample of the images
    assert x.dtype == torch.float32 and tuple(x.shape[1:]) == (1, 28, 28)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.max()) > 0.9
    # the test split is balanced: 1,000 images of each class
    assert torch.bincount(fashion_test.labels).tolist() == [1000] * 10
    assert fashion_test.class_names[5] == "Sandal" and len(FASHION_CLASSES) == 10


def test_fashion_from_other_dir_and_missing_files(tmp_path: Path) -> None:
    imgs = np.random.default_rng(0).integers(0, 256, (6, 28, 28)).astype(np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs, gz=True)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1, 2, 3, 4, 9], np.uint8))
    data = load_fashion_mnist("test", data_dir=tmp_path)
    assert len(data) == 6 and data.labels.tolist() == [0, 1, 2, 3, 4, 9]
    assert torch.allclose(data.take([0])[0, 0], torch.from_numpy(imgs[0]).float() / 255)
    with pytest.raises(DataError, match="train-images"):
        load_fashion_mnist("train", data_dir=tmp_path)


def test_fashion_mismatched_labels(tmp_path: Path) -> None:
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros((2,), np.uint8))
    with pytest.raises(DataError, match="3 images but 2 labels"):
        load_fashion_mnist("test", data_dir=tmp_path)


def test_digits_splits() -> None:
    test, train = load_digits("test"), load_digits("train")
    assert len(test) + len(train) == 1797
    assert test.input_shape == (1, 8, 8) and float(pixels(train).max()) == 1.0


def test_load_dataset_names() -> None:
    assert load_dataset("digits", "test").name == "digits"
    with pytest.raises(UsageError, match="unknown data set"):
        load_dataset("imagenet")
    with pytest.raises(UsageError, match="split"):
        load_dataset("digits", "valid")


def test_stratified_subset(fashion_test) -> None:  # type: ignore[no-untyped-def]
    sub = fashion_test.subset(per_class=3)
    assert torch.bincount(sub.labels).tolist() == [3] * 10
    with pytest.raises(UsageError):
        fashion_test.subset(0)
