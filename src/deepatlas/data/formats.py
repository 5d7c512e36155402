"""The image data people have: ImageFolder trees, CIFAR-10/100 and MNIST as torchvision stores
them, and ``.npz`` arrays; fitted to the model's input shape.

``load_data(spec, split, input_shape=...)`` accepts (``--data`` on the CLI):

``fashion-mnist``, ``digits``
    the built-in sets (:func:`load_dataset`).
``imagefolder:DIR``
    one sub-folder per class holding PNG/JPEG files (torchvision's ImageFolder layout; classes
    are the sorted sub-folder names). When ``DIR/train`` and ``DIR/test`` exist the split picks
    one; otherwise ``DIR`` itself is the data (split ``all``).
``cifar10:DIR`` / ``cifar100:DIR``
    the "python version" batches (``cifar-10-batches-py/`` or ``cifar-100-python/``, in
    ``DIR`` or ``DIR`` itself). Those files are pickles of numpy arrays: they are read with an
    unpickler that admits only numpy's array reconstruction, never code.
``mnist:DIR``
    the four IDX files (``train-images-idx3-ubyte[.gz]`` ...) in ``DIR``, ``DIR/raw`` or
    ``DIR/MNIST/raw``.
``npz:FILE``
    arrays ``x`` (N,H,W), (N,H,W,C) or (N,C,H,W), uint8 0..255 or float 0..1; ``y`` integer
    labels; optional ``classes`` (strings). Read with ``allow_pickle=False``.

Fitting (:func:`fit_images`): grey -> RGB by repeating the channel, RGB -> grey as the ITU-R
BT.601 luminance, then a bilinear, antialiased resize to (H, W). Conversion to float32 is done
in chunks of 256 images so the peak is one float32 copy of the fitted set plus one chunk; with
``limit`` only the chosen images are decoded at all (ImageFolder picks them round-robin over
the classes, so a limit keeps every class).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from deepatlas.data.base import ImageSet
from deepatlas.data.digits import load_digits
from deepatlas.data.fashion_mnist import load_fashion_mnist
from deepatlas.data.idx import read_idx
from deepatlas.errors import DataError, UsageError

__all__ = ["DATASETS", "DATA_KINDS", "fit_images", "load_data", "load_dataset"]

#: Built-in data set names that ``load_dataset`` accepts (``--data`` also takes the specs of
#: :func:`load_data`).
DATASETS = ("fashion-mnist", "digits")

#: Spec prefixes ``load_data`` accepts besides the built-in names.
DATA_KINDS = ("imagefolder", "cifar10", "cifar100", "mnist", "npz")

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
_CHUNK = 256


def fit_images(x: np.ndarray | torch.Tensor, shape: tuple[int, int, int] | list[int] | None) -> torch.Tensor:
    """(N, C, H, W) uint8 or float images -> float32 in [0, 1] of ``shape`` (C, H, W).

    ``shape`` None keeps the images as they are; a channel count of 0 keeps the channels.
    """
    if isinstance(x, np.ndarray):
        x = np.ascontiguousarray(x)
        t = torch.from_numpy(x if x.flags.writeable else x.copy())
    else:
        t = x
    if t.ndim != 4:
        raise DataError(f"images must be (N, C, H, W); got {tuple(t.shape)}")
    n, c, h, w = t.shape
    tc, th, tw = (c, h, w) if shape is None else (int(shape[0]) or c, int(shape[1]), int(shape[2]))
    if c not in (1, 3) and tc != c:
        raise DataError(f"cannot turn {c}-channel images into {tc} channels")
    if tc not in (1, 3) and tc != c:
        raise DataError(f"the model wants {tc} channels; only 1 (grey) and 3 (RGB) are converted")
    out = torch.empty((n, tc, th, tw), dtype=torch.float32)
    for s in range(0, n, _CHUNK):
        chunk = t[s : s + _CHUNK]
        chunk = chunk.float().div_(255.0) if chunk.dtype == torch.uint8 else chunk.float()
        if tc == 3 and c == 1:
            chunk = chunk.expand(-1, 3, -1, -1)
        elif tc == 1 and c == 3:
            chunk = (0.299 * chunk[:, 0:1] + 0.587 * chunk[:, 1:2] + 0.114 * chunk[:, 2:3])
        if (th, tw) != (h, w):
            chunk = F.interpolate(chunk, size=(th, tw), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
        out[s : s + len(chunk)] = chunk
    return out

def load_dataset(name: str, split: str = "test", *, data_dir: str | Path | None = None) -> ImageSet:
    """Load a data set by name.

    Parameters
    ----------
    name : {"fashion-mnist", "digits"}
    split : {"train", "test"}, default "test"
    data_dir : path, optional
        Where the Fashion-MNIST IDX files are (default: the Debian package's directory).

    Raises
    ------
    UsageError
        Unknown name or split.
    DataError
        Files missing or malformed.
    """
    if split not in ("train", "test"):
        raise UsageError(f"unknown split {split!r}; use 'train' or 'test'")
    key = name.lower()
    if key in ("fashion-mnist", "fashion_mnist", "fashionmnist"):
        return load_fashion_mnist(split, data_dir=data_dir)
    if key == "digits":
        return load_digits(split)
    raise UsageError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}, or imagefolder:DIR, cifar10:DIR, "
                     "cifar100:DIR, mnist:DIR, npz:FILE")


def load_data(
    spec: str,
    split: str = "test",
    *,
    data_dir: str | Path | None = None,
    input_shape: tuple[int, int, int] | list[int] | None = None,
    limit: int | None = None,
) -> ImageSet:
    """Load a data set from a ``--data`` spec and fit it to ``input_shape``.

    Parameters
    ----------
    spec : str
        See the module docstring.
    split : {"train", "test", "all"}
        ``all`` only for an ImageFolder without train/test sub-folders and for ``npz``.
    data_dir : path, optional
        Fashion-MNIST's folder (built-in set only).
    input_shape : (C, H, W), optional
        The model's input; C = 0 keeps the data's channels. None keeps the images as stored.
    limit : int, optional
        Only this many images (decoded lazily where the format allows).

    Returns
    -------
    ImageSet
        ``name`` is short (e.g. ``imagefolder-flowers``), ``source`` the spec with an absolute
        path, which reloads the same data.

    Raises
    ------
    UsageError
        Unknown spec or split.
    DataError
        Missing, malformed or empty files; the message says which files belong where.
    """
    if limit is not None and limit <= 0:
        raise UsageError(f"limit must be positive, got {limit}")
    kind, sep, rest = spec.partition(":")
    kind = kind.lower()
    if not sep:
        data = load_dataset(spec, split, data_dir=data_dir)
        if limit is not None:
            data = data.subset(limit)
        if input_shape is not None and tuple(input_shape) != data.input_shape:
            data = ImageSet(fit_images(data.images, input_shape), data.labels, data.class_names, data.name, data.split)
        return data
    if kind not in DATA_KINDS:
        raise UsageError(f"unknown data spec {spec!r}; use fashion-mnist, digits, or one of "
                         f"{', '.join(k + ':PATH' for k in DATA_KINDS)}")
    if not rest:
        raise UsageError(f"--data {kind}: needs a path, e.g. {kind}:/data/my-set")
    path = Path(rest).expanduser().resolve()
    if split not in ("train", "test", "all"):
        raise UsageError(f"unknown split {split!r}; use train, test or all")
    if kind == "imagefolder":
        x, y, classes, split = _imagefolder(path, split, input_shape, limit)
        return ImageSet(x, y, classes, f"imagefolder-{path.name}", split, f"imagefolder:{path}")
    if kind in ("cifar10", "cifar100"):
        raw, labels, classes = _cifar(path, split, kind)
    elif kind == "mnist":
        raw, labels, classes = _mnist(path, split)
    else:
        raw, labels, classes = _npz(path)
        split = "all"
    if limit is not None:
        raw, labels = raw[:limit], labels[:limit]
    if len(labels) == 0:
        raise DataError(f"{spec} holds no images")
    name = f"{kind}-{path.stem}" if kind == "npz" else kind
    return ImageSet(fit_images(raw, input_shape), torch.from_numpy(labels.astype(np.int64)), classes, name, split,
                    f"{kind}:{path}")


def _imagefolder(
    root: Path, split: str, shape: tuple[int, int, int] | list[int] | None, limit: int | None
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...], str]:
    from PIL import Image, UnidentifiedImageError

    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; it needs one sub-folder per class with PNG/JPEG files")
    if (root / "train").is_dir() and (root / "test").is_dir():
        if split == "all":
            raise UsageError(f"{root} has train/ and test/; pick --split train or test")
        root = root / split
    else:
        split = "all"
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class sub-folders; ImageFolder layout: {root}/CLASS/IMAGE.png")
    files = [sorted(f for f in (root / c).rglob("*") if f.is_file() and f.suffix.lower() in _IMAGE_SUFFIXES) for c in classes]
    empty = [c for c, fs in zip(classes, files, strict=True) if not fs]
    if empty:
        raise DataError(f"class folder(s) without PNG/JPEG images in {root}: {', '.join(empty)}")
    # round-robin over the classes, so a limit keeps every class (and the order is fixed)
    order: list[tuple[Path, int]] = []
    for i in range(max(len(fs) for fs in files)):
        order += [(fs[i], c) for c, fs in enumerate(files) if i < len(fs)]
    if limit is not None:
        order = order[:limit]
    target = None if shape is None else (int(shape[0]), int(shape[1]), int(shape[2]))
    out: torch.Tensor | None = None
    for k, (file, _) in enumerate(order):
        try:
            with Image.open(file) as im:
                im.load()
                mode = "L" if im.mode in ("1", "L", "I;16", "I", "F") else "RGB"
                arr = np.asarray(im.convert(mode if target is None or target[0] == 0 else ("L" if target[0] == 1 else "RGB")))
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{file} is not a readable image ({exc})") from None
        chw = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        if target is None:
            target = (chw.shape[0], chw.shape[1], chw.shape[2])
        elif target[0] == 0:
            target = (chw.shape[0], target[1], target[2])
        if out is None:
            out = torch.empty((len(order), *target), dtype=torch.float32)
        if chw.shape[0] != target[0] and shape is None:
            raise DataError(f"{file} has {chw.shape[0]} channels, the first image {target[0]}; pass --input-size CxHxW")
        if chw.shape[1:] != target[1:] and shape is None:
            raise DataError(f"{file} is {chw.shape[2]}x{chw.shape[1]}, the first image {target[2]}x{target[1]}; "
                            "pass --input-size HxW to resize them all")
        out[k] = fit_images(chw[None], target)[0]
    assert out is not None
    labels = torch.tensor([c for _, c in order], dtype=torch.int64)
    return out, labels, tuple(classes), split


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, bytes and numpy arrays; any other global is refused."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def _read_pickle(path: Path) -> dict[str, Any]:
    try:
        data = _ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as exc:
        raise DataError(f"{path} is not a CIFAR batch of plain arrays ({exc}); nothing in it was run") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a CIFAR batch (a dict)")
    return {str(k.decode() if isinstance(k, bytes) else k): v for k, v in data.items()}


def _cifar(root: Path, split: str, kind: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    sub = "cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python"
    folder = root / sub if (root / sub).is_dir() else root
    if kind == "cifar10":
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        meta_name, label_key, names_key = "batches.meta", "labels", "label_names"
    else:
        names = ["train"] if split == "train" else ["test"]
        meta_name, label_key, names_key = "meta", "fine_labels", "fine_label_names"
    if split == "all":
        raise UsageError(f"{kind} has a train and a test split; pick --split train or test")
    missing = [n for n in [*names, meta_name] if not (folder / n).is_file()]
    if missing:
        raise DataError(
            f"{kind}: {', '.join(missing)} not found in {folder}; unpack the 'python version' archive "
            f"({sub}.tar.gz from the CIFAR site, as torchvision downloads it) so that {root}/{sub}/ holds "
            f"{', '.join([*names, meta_name])} (deepatlas never downloads)"
        )
    xs, ys = [], []
    for n in names:
        batch = _read_pickle(folder / n)
        if "data" not in batch or label_key not in batch:
            raise DataError(f"{folder / n} lacks 'data' or '{label_key}'")
        x = np.asarray(batch["data"])
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
            raise DataError(f"{folder / n}: data must be uint8 (N, 3072), got {x.dtype} {x.shape}")
        y = np.asarray(batch[label_key], dtype=np.int64)
        if y.shape != (x.shape[0],):
            raise DataError(f"{folder / n}: {x.shape[0]} images but {y.shape} labels")
        xs.append(x.reshape(-1, 3, 32, 32))
        ys.append(y)
    meta = _read_pickle(folder / meta_name)
    classes = tuple(c.decode() if isinstance(c, bytes) else str(c) for c in meta.get(names_key, []))
    y = np.concatenate(ys)
    if not classes or y.min() < 0 or y.max() >= len(classes):
        raise DataError(f"{folder / meta_name}: {names_key} does not cover labels {y.min()}..{y.max()}")
    return np.concatenate(xs), y, classes


def _mnist(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    stems = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
    if split == "all":
        raise UsageError("mnist has a train and a test split; pick --split train or test")
    found: list[Path] = []
    for stem in stems[split]:
        hits = [d / f"{stem}{gz}" for d in (root, root / "raw", root / "MNIST" / "raw") for gz in ("", ".gz")
                if (d / f"{stem}{gz}").is_file()]
        if not hits:
            raise DataError(f"mnist: {stem}[.gz] not found in {root} (nor {root}/raw, {root}/MNIST/raw); put the "
                            f"four IDX files there, as torchvision's MNIST(root={root}) stores them (deepatlas never downloads)")
        found.append(hits[0])
    x, y = read_idx(found[0]), read_idx(found[1])
    if x.ndim != 3 or y.shape != (x.shape[0],):
        raise DataError(f"mnist: images {x.shape} and labels {y.shape} do not match")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(f"mnist labels must lie in 0..9, found {y.min()}..{y.max()}")
    return x[:, None], y.astype(np.int64), tuple(str(d) for d in range(10))


def _npz(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    if not path.is_file():
        raise DataError(f"{path} does not exist; an npz data set holds arrays x (images) and y (labels)")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError) as exc:
        raise DataError(f"{path} is not a readable .npz of plain arrays ({exc})") from None
    if "x" not in arrays or "y" not in arrays:
        raise DataError(f"{path} must hold arrays 'x' and 'y'; it holds {', '.join(arrays) or 'nothing'}")
    x, y = arrays["x"], arrays["y"]
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim != 4:
        raise DataError(f"{path}: x must be (N,H,W), (N,H,W,C) or (N,C,H,W); got {x.shape}")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.floating):
            raise DataError(f"{path}: x must be uint8 (0..255) or float (0..1), got {x.dtype}")
        if x.size and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise DataError(f"{path}: float images must lie in [0, 1]; found {float(x.min()):.3g}..{float(x.max()):.3g}")
        x = x.astype(np.float32)
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (x.shape[0],):
        raise DataError(f"{path}: y must be {x.shape[0]} integer labels, got {y.dtype} {y.shape}")
    if "classes" in arrays:
        classes = tuple(str(c) for c in arrays["classes"].tolist())
    else:
        classes = tuple(str(i) for i in range(int(y.max()) + 1 if y.size else 0))
    if y.size and (y.min() < 0 or y.max() >= len(classes)):
        raise DataError(f"{path}: labels {y.min()}..{y.max()} but {len(classes)} classes")
    return x, y, classes
