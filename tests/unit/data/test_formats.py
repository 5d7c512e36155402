"""The data people have: ImageFolder trees, CIFAR and MNIST files, npz arrays, written here."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepatlas.data.formats import fit_images, load_data
from deepatlas.errors import DataError, UsageError
from tests.helpers import pixels

torch.set_num_threads(1)


def _tree(root: Path, classes: dict[str, int], size: tuple[int, int] = (12, 10)) -> None:
    """Class c's images are filled with the grey level 40 * (c + 1); every other file a JPEG."""
    for c, (name, n) in enumerate(classes.items()):
        (root / name).mkdir(parents=True)
        for i in range(n):
            img = Image.new("RGB", size, (40 * (c + 1),) * 3)
            img.save(root / name / (f"{i:03d}.png" if i % 2 == 0 else f"{i:03d}.jpg"), quality=100)


def test_imagefolder_resized_rgb_and_round_robin_limit(tmp_path: Path) -> None:
    _tree(tmp_path / "set", {"ant": 5, "bee": 3, "cow": 4})
    data = load_data(f"imagefolder:{tmp_path / 'set'}", "test", input_shape=(3, 16, 16))
    assert len(data) == 12 and tuple(pixels(data).shape) == (12, 3, 16, 16) and data.split == "all"
    assert data.class_names == ("ant", "bee", "cow") and data.source == f"imagefolder:{(tmp_path / 'set').resolve()}"
    for c in range(3):  # the uniform grey level survives resizing and JPEG
        assert torch.allclose(pixels(data)[data.labels == c], torch.tensor(40 * (c + 1) / 255), atol=2 / 255)
    limited = load_data(f"imagefolder:{tmp_path / 'set'}", "all", input_shape=(1, 8, 8), limit=6)
    assert limited.labels.tolist() == [0, 1, 2, 0, 1, 2] and tuple(pixels(limited).shape) == (6, 1, 8, 8)
    native = load_data(f"imagefolder:{tmp_path / 'set'}", "all")
    assert native.input_shape == (3, 10, 12)


def test_imagefolder_splits_sizes_and_errors(tmp_path: Path) -> None:
    _tree(tmp_path / "s" / "train", {"a": 2, "b": 2})
    _tree(tmp_path / "s" / "test", {"a": 1, "b": 1})
    assert len(load_data(f"imagefolder:{tmp_path / 's'}", "train", input_shape=(3, 8, 8))) == 4
    assert load_data(f"imagefolder:{tmp_path / 's'}", "test", input_shape=(3, 8, 8)).split == "test"
    Image.new("RGB", (30, 30)).save(tmp_path / "s" / "test" / "a" / "big.png")
    with pytest.raises(DataError, match="--input-size"):  # images are read on demand: the odd one fails when read
        pixels(load_data(f"imagefolder:{tmp_path / 's'}", "test"))
    (tmp_path / "s" / "test" / "b" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"bad\.png is not a readable image"):  # one line naming the file, from a worker too
        list(load_data(f"imagefolder:{tmp_path / 's'}", "test", input_shape=(3, 8, 8)).batches(2, workers=1))
    (tmp_path / "e" / "only").mkdir(parents=True)
    with pytest.raises(DataError, match="without PNG/JPEG"):
        load_data(f"imagefolder:{tmp_path / 'e'}", "all")
    with pytest.raises(DataError, match="does not exist"):
        load_data(f"imagefolder:{tmp_path / 'nowhere'}", "all")
    with pytest.raises(UsageError, match="unknown data spec"):
        load_data(f"folder:{tmp_path}", "all")


def _cifar10(root: Path, n: int = 4) -> np.ndarray:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    test_x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    for name, x in [*((f"data_batch_{i}", rng.integers(0, 256, (2, 3072), dtype=np.uint8)) for i in range(1, 6)),
                    ("test_batch", test_x)]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": x, b"labels": [i % 10 for i in range(len(x))], b"batch_label": b"x"}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog",
                                      b"horse", b"ship", b"truck"]}, f)
    return test_x


def test_cifar10_and_cifar100(tmp_path: Path) -> None:
    test_x = _cifar10(tmp_path)
    data = load_data(f"cifar10:{tmp_path}", "test")
    assert tuple(pixels(data).shape) == (4, 3, 32, 32) and data.class_names[0] == "airplane"
    # CIFAR rows are R (1024), G (1024), B (1024), row-major
    assert float(pixels(data)[1, 2, 3, 5]) == pytest.approx(test_x[1, 2048 + 3 * 32 + 5] / 255.0)
    assert len(load_data(f"cifar10:{tmp_path}", "train")) == 10
    folder = tmp_path / "c100" / "cifar-100-python"
    folder.mkdir(parents=True)
    for split in ("train", "test"):
        with open(folder / split, "wb") as f:
            pickle.dump({"data": np.zeros((3, 3072), np.uint8), "fine_labels": [0, 99, 5], "coarse_labels": [0, 1, 2]}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, f)
    c100 = load_data(f"cifar100:{tmp_path / 'c100'}", "test", input_shape=(3, 64, 64))
    assert c100.labels.tolist() == [0, 99, 5] and len(c100.class_names) == 100 and c100.input_shape == (3, 64, 64)


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_cifar_missing_files_and_a_malicious_batch(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"test_batch, batches.meta not found .*cifar-10-batches-py"):
        load_data(f"cifar10:{tmp_path}", "test")
    _cifar10(tmp_path)
    marker = tmp_path / "PWNED"
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"data": _Payload(str(marker)), "labels": [0]}, f)
    with pytest.raises(DataError, match="nothing in it was run"):
        load_data(f"cifar10:{tmp_path}", "test")
    assert not marker.exists()


def _idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(gzip.compress(header + arr.tobytes()))


def test_mnist_in_torchvisions_layout(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    x = np.arange(5 * 28 * 28, dtype=np.uint32).reshape(5, 28, 28).astype(np.uint8)
    _idx(raw / "t10k-images-idx3-ubyte.gz", x)
    _idx(raw / "t10k-labels-idx1-ubyte.gz", np.array([3, 1, 4, 1, 5], np.uint8))
    data = load_data(f"mnist:{tmp_path}", "test", input_shape=(3, 28, 28))
    assert data.labels.tolist() == [3, 1, 4, 1, 5] and data.input_shape == (3, 28, 28)
    assert torch.equal(pixels(data)[:, 0], pixels(data)[:, 2])  # grey repeated into RGB
    assert float(pixels(data)[2, 1, 4, 7]) == pytest.approx(x[2, 4, 7] / 255.0)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*never downloads"):
        load_data(f"mnist:{tmp_path}", "train")


def test_npz_layouts_and_errors(tmp_path: Path) -> None:
    x = np.zeros((4, 6, 6, 3), np.uint8)
    x[:, :, :, 0] = 255  # red
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 1, 0]), classes=np.array(["no", "yes"]))
    data = load_data(f"npz:{tmp_path / 'd.npz'}", "all")
    assert data.input_shape == (3, 6, 6) and data.class_names == ("no", "yes")
    assert pixels(data)[:, 0].min() == 1.0 and pixels(data)[:, 1:].max() == 0.0
    grey = load_data(f"npz:{tmp_path / 'd.npz'}", "all", input_shape=(1, 6, 6))
    assert torch.allclose(pixels(grey), torch.tensor(0.299), atol=0.5 / 255)  # BT.601 luminance of pure red
    np.savez(tmp_path / "f.npz", x=np.full((2, 5, 5), 2.0), y=np.array([0, 1]))
    with pytest.raises(DataError, match=r"must lie in \[0, 1\]"):
        load_data(f"npz:{tmp_path / 'f.npz'}", "all")
    np.savez(tmp_path / "g.npz", images=np.zeros((2, 5, 5)))
    with pytest.raises(DataError, match="must hold arrays 'x' and 'y'"):
        load_data(f"npz:{tmp_path / 'g.npz'}", "all")
    np.savez(tmp_path / "o.npz", x=np.array([object()], dtype=object), y=np.array([0]))
    with pytest.raises(DataError, match="plain arrays"):
        load_data(f"npz:{tmp_path / 'o.npz'}", "all")


def test_fit_images_resizes_without_leaving_the_unit_interval() -> None:
    x = torch.rand(3, 3, 20, 20)
    out = fit_images(x, (3, 7, 9))
    assert out.shape == (3, 3, 7, 9) and out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.05)
    with pytest.raises(DataError, match="only 1 \\(grey\\) and 3"):
        fit_images(x, (4, 20, 20))
