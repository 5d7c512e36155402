"""The image data people have: ImageFolder trees, ImageNet, WebDataset shards, CIFAR-10/100 and
MNIST as torchvision stores them, and ``.npz`` arrays; delivered at the model's input shape.

``load_data(spec, split, input_shape=...)`` accepts (``--data`` on the CLI):

``fashion-mnist``, ``digits``
    the built-in sets (:func:`load_dataset`).
``imagefolder:DIR``
    one sub-folder per class holding PNG/JPEG files (torchvision's ImageFolder layout; classes
    are the sorted sub-folder names). When ``DIR/train`` and ``DIR/test`` exist the split picks
    one; otherwise ``DIR`` itself is the data (split ``all``). Images are taken round-robin over
    the classes, so ``--limit`` keeps every class.
``imagenet:DIR``
    ImageNet's layout: ``DIR/train/n01440764/*.JPEG`` and ``DIR/val/n01440764/*.JPEG`` (the
    validation images in synset folders, as ``torchvision.datasets.ImageNet`` arranges them);
    ``--split val`` (or ``test``) or ``train``. Class names from ``DIR/LOC_synset_mapping.txt``
    or ``DIR/synset_words.txt`` when present (``tench``), else the synset ids.
``webdataset:SHARDS``
    WebDataset tar shards (:mod:`deepatlas.data.shards`): a folder of ``.tar`` files, one file,
    or a brace range ``shards-{000000..000099}.tar``.
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

Nothing is decoded here: files and shards are listed (and shards' tar headers indexed), array
formats are read into one uint8 array (their files are that array), and images are decoded and
fitted to the model (:func:`deepatlas.data.base.fit_images`: grey <-> RGB, bilinear antialiased
resize) batch by batch as :meth:`ImageSet.batches` reads them, in DataLoader worker processes.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from deepatlas.data.base import ArrayReader, ImageSet, fit_images
from deepatlas.data.digits import load_digits
from deepatlas.data.fashion_mnist import load_fashion_mnist
from deepatlas.data.files import FileReader, check_root, imagefolder_files, read_synset_names
from deepatlas.data.idx import read_idx
from deepatlas.errors import DataError, UsageError
from deepatlas.limits import MAX_CLASSES

__all__ = ["DATASETS", "DATA_KINDS", "MAX_CLASSES", "fit_images", "load_data", "load_dataset"]

#: Built-in data set names that ``load_dataset`` accepts (``--data`` also takes the specs of
#: :func:`load_data`).
DATASETS = ("fashion-mnist", "digits")

#: Spec prefixes ``load_data`` accepts besides the built-in names.
DATA_KINDS = ("imagefolder", "imagenet", "webdataset", "cifar10", "cifar100", "mnist", "npz")



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
    input_shape: tuple[int, int, int] | Sequence[int] | None = None,
    limit: int | None = None,
) -> ImageSet:
    """Open a data set from a ``--data`` spec, delivered at ``input_shape``.

    Parameters
    ----------
    spec : str
        See the module docstring.
    split : {"train", "test", "val", "all"}
        ``all`` only for an ImageFolder without train/test sub-folders, ``npz`` and shards;
        ``val`` for ImageNet (``test`` is taken as ``val`` there).
    data_dir : path, optional
        Fashion-MNIST's folder (built-in set only).
    input_shape : (C, H, W), optional
        The model's input; C = 0 keeps the data's channels. None keeps the images as stored.
    limit : int, optional
        Only this many images (the others are never read).

    Returns
    -------
    ImageSet
        Read on demand. ``name`` is short (e.g. ``imagefolder-flowers``), ``source`` the spec
        with an absolute path, which opens the same data again.

    Raises
    ------
    UsageError
        Unknown spec or split.
    DataError
        Missing, malformed or empty files; the message says which files belong where.
    """
    if limit is not None and limit <= 0:
        raise UsageError(f"limit must be positive, got {limit}")
    shape = None if input_shape is None else (int(input_shape[0]), int(input_shape[1]), int(input_shape[2]))
    kind, sep, rest = spec.partition(":")
    kind = kind.lower()
    if not sep:
        data = load_dataset(spec, split, data_dir=data_dir)
        if shape is not None and shape != data.input_shape:
            assert isinstance(data.reader, ArrayReader)
            data = ImageSet(data.reader.fitted(shape), data._labels, data.class_names, data.name, data.split, data.source)
        return data.subset(limit) if limit is not None else data
    if kind not in DATA_KINDS:
        raise UsageError(f"unknown data spec {spec!r}; use fashion-mnist, digits, or one of "
                         f"{', '.join(k + ':PATH' for k in DATA_KINDS)}")
    if not rest:
        raise UsageError(f"--data {kind}: needs a path, e.g. {kind}:/data/my-set")
    if split not in ("train", "test", "val", "all"):
        raise UsageError(f"unknown split {split!r}; use train, test, val or all")
    if kind == "webdataset":
        data = _webdataset(rest, shape)
        return data.subset(limit) if limit is not None else data
    path = Path(rest).expanduser().resolve()
    if kind in ("imagefolder", "imagenet"):
        data = _imagefolder(path, split, shape, limit, kind)
        return data
    if split == "val":
        raise UsageError(f"{kind} has a train and a test split; pick --split train or test")
    if kind in ("cifar10", "cifar100"):
        raw, labels, classes = _cifar(path, split, kind)
    elif kind == "mnist":
        raw, labels, classes = _mnist(path, split)
    else:
        raw, labels, classes = _npz(path)
        split = "all"
    if len(labels) == 0:
        raise DataError(f"{spec} holds no images")
    name = f"{kind}-{path.stem}" if kind == "npz" else kind
    data = ImageSet(ArrayReader(raw, shape), labels.astype(np.int64), classes, name, split, f"{kind}:{path}")
    return data.subset(limit) if limit is not None else data


def _imagefolder(root: Path, split: str, shape: tuple[int, int, int] | None, limit: int | None, kind: str) -> ImageSet:
    """An ImageFolder (or ImageNet) tree: listed, not decoded; ``limit`` cuts the listing."""
    folder, split = check_root(root, split, kind)
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{folder} has no class sub-folders; ImageFolder layout: {folder}/CLASS/IMAGE.png")
    if len(classes) > MAX_CLASSES:
        raise DataError(f"{folder} has {len(classes):,} class folders; deepatlas takes at most {MAX_CLASSES:,}")
    files, labels = imagefolder_files(folder, classes)
    if limit is not None:
        files, labels = files[:limit], labels[:limit]
    names = (read_synset_names(root, classes) if kind == "imagenet" else None) or classes
    name = f"imagenet-{root.name}" if kind == "imagenet" else f"imagefolder-{root.name}"
    return ImageSet(FileReader(folder, files, shape), labels, names, name, split, f"{kind}:{root}")


def _webdataset(spec: str, shape: tuple[int, int, int] | None) -> ImageSet:
    """WebDataset shards, indexed (:mod:`deepatlas.data.shards`)."""
    from deepatlas.data.shards import ShardReader, expand_shards, index_shards

    paths = expand_shards(spec)
    shard_ids, offsets, sizes, labels, keys = index_shards(paths)
    if labels.min() < 0 or labels.max() >= MAX_CLASSES:
        raise DataError(f"shard labels must lie in 0..{MAX_CLASSES - 1}; found {labels.min()}..{labels.max()}")
    names_file = paths[0].parent / "classes.txt"
    n_classes = int(labels.max()) + 1
    if names_file.is_file():
        classes = tuple(line.strip() for line in names_file.read_text(encoding="utf-8").splitlines() if line.strip())
        if len(classes) < n_classes:
            raise DataError(f"{names_file} names {len(classes)} classes but the shards hold labels up to {n_classes - 1}")
    else:
        classes = tuple(str(i) for i in range(n_classes))
    source = spec if "{" in spec else str(Path(spec).expanduser().resolve())
    stem = paths[0].parent.name if len(paths) > 1 or Path(spec).expanduser().is_dir() else paths[0].stem
    return ImageSet(ShardReader(paths, shard_ids, offsets, sizes, keys, shape), labels, classes, f"webdataset-{stem}", "all",
                    f"webdataset:{source}")


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
        if x.size and not np.isfinite(x).all():
            raise DataError(f"{path}: x holds NaN or infinite values; images must be finite")
        if x.size and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
            raise DataError(f"{path}: float images must lie in [0, 1]; found {float(x.min()):.3g}..{float(x.max()):.3g}")
        x = x.astype(np.float32)
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (x.shape[0],):
        raise DataError(f"{path}: y must be {x.shape[0]} integer labels, got {y.dtype} {y.shape}")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= MAX_CLASSES):
        raise DataError(f"{path}: labels must lie in 0..{MAX_CLASSES - 1} (at most {MAX_CLASSES:,} classes); "
                        f"found {int(y.min())}..{int(y.max())}")
    if "classes" in arrays:
        classes = tuple(str(c) for c in arrays["classes"].tolist())
    else:
        classes = tuple(str(i) for i in range(int(y.max()) + 1 if y.size else 0))
    if y.size and (y.min() < 0 or y.max() >= len(classes)):
        raise DataError(f"{path}: labels {y.min()}..{y.max()} but {len(classes)} classes")
    return x, y, classes
