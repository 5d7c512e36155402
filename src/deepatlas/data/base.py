"""The :class:`ImageSet`: a data set read on demand, batch by batch, never held whole.

An ImageSet is a *reader* (where the pixels are: arrays, image files, tar shards), the labels
of every image (known when the set is opened, without decoding a pixel), the class names and
an optional selection of positions (``subset``). Images leave a reader as uint8 (or float32
for a source that stores floats) at the model's input shape; they become float32 in [0, 1]
only on the device (:meth:`ImageSet.batches`), so a batch crosses worker processes, pinned
memory and the bus at a quarter of the float32 size. Memory therefore does not grow with the
number of images: what is held is the labels (8 bytes an image), the reader's index (file
names or offsets) and the batches in flight.

Reading goes through :class:`torch.utils.data.DataLoader`: decoding and resizing run in its
worker processes (``workers``; default :func:`default_workers`), batches come in a fixed order
(the set's positions in order, whatever the number of workers), and ``shard=(rank, world)``
hands each process of a ``torchrun`` job every world-th image, so each image is read exactly
once across the job.

Examples
--------
>>> import torch
>>> data = ImageSet.from_tensors(torch.rand(10, 1, 4, 4), torch.arange(10) % 2, ("even", "odd"), "toy", "all")
>>> [tuple(b.images.shape) for b in data.batches(4)]
[(4, 1, 4, 4), (4, 1, 4, 4), (2, 1, 4, 4)]
>>> data.subset(per_class=2).labels.tolist()
[0, 1, 0, 1]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from deepatlas.errors import DataError, DeepAtlasError, UsageError

__all__ = ["ArrayReader", "Batch", "ImageSet", "Reader", "Stream", "default_workers", "describe_fit", "fit_images", "to_unit"]


class Reader(Protocol):
    """Where an ImageSet's pixels come from. Picklable: DataLoader workers get a copy.

    Attributes
    ----------
    shape : (C, H, W)
        What :meth:`read` delivers.
    decodes : bool
        Whether reading costs real work (decoding files, resizing): then worker processes pay.
    """

    shape: tuple[int, int, int]
    decodes: bool

    def __len__(self) -> int: ...

    def read(self, indices: np.ndarray) -> torch.Tensor:
        """(k, C, H, W) uint8 (or float32 in [0, 1]) for the reader's own ``indices``."""
        ...


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 0..1 (float input keeps its dtype)."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images


def fit_images(x: np.ndarray | torch.Tensor, shape: tuple[int, int, int] | Sequence[int] | None, *,
               keep_uint8: bool = False) -> torch.Tensor:
    """(N, C, H, W) uint8 or float images -> images of ``shape`` (C, H, W).

    Grey -> RGB repeats the channel, RGB -> grey is the ITU-R BT.601 luminance, then a bilinear,
    antialiased resize. Returns floats in [0, 1] (float32 for uint8 input, else the input's
    dtype), or with ``keep_uint8`` and uint8 input, uint8 (rounded). ``shape`` None keeps the images as they are; a channel count of 0 keeps
    the channels.
    """
    if isinstance(x, np.ndarray):
        x = np.ascontiguousarray(x)
        t = torch.from_numpy(x if x.flags.writeable else x.copy())
    else:
        t = x
    if t.ndim != 4:
        raise DataError(f"images must be (N, C, H, W); got {tuple(t.shape)}")
    _, c, h, w = t.shape
    tc, th, tw = (c, h, w) if shape is None else (int(shape[0]) or c, int(shape[1]), int(shape[2]))
    if c not in (1, 3) and tc != c:
        raise DataError(f"cannot turn {c}-channel images into {tc} channels")
    if tc not in (1, 3) and tc != c:
        raise DataError(f"the model wants {tc} channels; only 1 (grey) and 3 (RGB) are converted")
    uint8_out = keep_uint8 and t.dtype == torch.uint8
    if (tc, th, tw) == (c, h, w):
        return t if uint8_out else to_unit(t)
    chunk = to_unit(t)
    if tc == 3 and c == 1:
        chunk = chunk.expand(-1, 3, -1, -1)
    elif tc == 1 and c == 3:
        chunk = 0.299 * chunk[:, 0:1] + 0.587 * chunk[:, 1:2] + 0.114 * chunk[:, 2:3]
    if (th, tw) != (h, w):
        chunk = F.interpolate(chunk, size=(th, tw), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
    if uint8_out:
        return (chunk * 255.0).round_().to(torch.uint8)
    return chunk.contiguous()


def describe_fit(stored: tuple[int, ...], target: tuple[int, ...], name: str) -> str | None:
    """One line saying what turning images of ``stored`` (C, H, W) into ``target`` changes,
    or None when only the size changes with the aspect kept (a plain rescale)."""
    (c, h, w), (tc, th, tw) = stored, target
    changes = []
    if c != tc:
        changes.append(f"{'grey repeated into 3 channels' if c == 1 else 'colour turned grey'}")
    if abs(h * tw - w * th) > max(h, w, th, tw):  # aspect ratios differ by more than a pixel
        changes.append(f"aspect changed ({w}x{h} -> {tw}x{th})")
    if not changes:
        return None
    return (f"{name} holds {c}x{h}x{w} images, the model takes {tc}x{th}x{tw}: {', '.join(changes)}; "
            "a model trained on other data gives meaningless edges")


class ArrayReader:
    """Images in one array (N, C, H, W), uint8 0..255 or float 0..1, fitted to ``shape`` as read.

    The array is shared with worker processes, never copied per image; a uint8 source stays
    uint8 after resizing (rounded).
    """

    def __init__(self, array: np.ndarray | torch.Tensor, shape: Sequence[int] | None = None) -> None:
        arr = array.numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
        if arr.ndim != 4:
            raise DataError(f"images must have shape (N, C, H, W); got {tuple(arr.shape)}")
        if arr.dtype not in (np.uint8, np.float32, np.float64):
            arr = arr.astype(np.float32)
        self.array = arr
        c, h, w = (int(d) for d in arr.shape[1:])
        self.stored_shape: tuple[int, int, int] = (c, h, w)
        self.shape: tuple[int, int, int] = (c, h, w) if shape is None else (int(shape[0]) or c, int(shape[1]), int(shape[2]))
        self.decodes = self.shape != (c, h, w)
        if self.decodes:
            fit_images(arr[:1], self.shape)  # refuse impossible channel conversions now, not in a worker

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def fitted(self, shape: Sequence[int] | None) -> ArrayReader:
        """The same array delivered at another shape (nothing is copied)."""
        return ArrayReader(self.array, shape)

    def read(self, indices: np.ndarray) -> torch.Tensor:
        lo = int(indices[0]) if len(indices) else 0
        contiguous = len(indices) > 0 and int(indices[-1]) - lo + 1 == len(indices) and bool((np.diff(indices) == 1).all())
        rows = self.array[lo : lo + len(indices)] if contiguous else self.array[indices]  # a slice is a view
        return fit_images(rows, self.shape, keep_uint8=True)


@dataclass(frozen=True)
class Batch:
    """One batch from :meth:`ImageSet.batches`: ``images`` float32 in [0, 1] on the device,
    ``labels`` int64 on the device, ``positions`` int64 on the CPU (positions in the ImageSet)."""

    images: torch.Tensor
    labels: torch.Tensor
    positions: torch.Tensor


def default_workers(reader: Reader | None = None) -> int:
    """DataLoader worker processes: none for a reader that only slices an array (a worker would
    add copies, not speed); for decoding readers (and with no reader given) the CPU count less
    one for the main process, at most 8 (``$DEEPATLAS_WORKERS`` overrides)."""
    text = os.environ.get("DEEPATLAS_WORKERS")
    if text is not None:
        if not text.isdigit():
            raise UsageError(f"DEEPATLAS_WORKERS must be a non-negative integer, got {text[:20]!r}")
        return int(text)
    if reader is not None and not reader.decodes:
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cpus - 1))


class _Samples(torch.utils.data.Dataset[Any]):
    """What a DataLoader worker reads: a batch of positions -> (pixels, labels, positions).

    A deepatlas error inside a worker comes back as a value, not an exception, so the main
    process can raise it with its own one-line message (a DataLoader re-raises worker errors
    with a traceback as the message).
    """

    def __init__(self, reader: Reader, indices: np.ndarray, labels: np.ndarray) -> None:
        self.reader, self.indices, self.labels = reader, indices, labels  # labels: of every image of the reader

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> Any:
        return self.__getitems__([k])

    def __getitems__(self, ks: Sequence[int]) -> Any:
        pos = np.asarray(ks, dtype=np.int64)
        rows = self.indices[pos]  # the reader's own indices
        try:
            pixels = self.reader.read(rows)
        except DeepAtlasError as exc:
            return ("error", type(exc).__name__, str(exc))
        return pixels, torch.from_numpy(self.labels[rows]), torch.from_numpy(pos)


def _identity(batch: Any) -> Any:
    return batch


class ImageSet:
    """Images with labels, read on demand.

    Parameters
    ----------
    reader : Reader
        Where the pixels are (:class:`ArrayReader`, ``data.files.FileReader``,
        ``data.shards.ShardReader``).
    labels : array of int
        One label per image of the reader, in ``range(len(class_names))``.
    class_names : tuple of str
    name : str
        Data set name, e.g. ``"fashion-mnist"``.
    split : str
        ``"train"``, ``"test"``, ``"val"`` or ``"all"`` (a data set without splits).
    source : str
        The ``--data`` spec that loads these images again (e.g. ``imagefolder:/abs/dir``);
        "" for the built-in sets, whose ``name`` does.
    indices : array of int, optional
        The reader's images this set holds, in this order (default: all of them).
    """

    def __init__(self, reader: Reader, labels: np.ndarray | torch.Tensor | Sequence[int], class_names: Sequence[str],
                 name: str, split: str, source: str = "", *, indices: np.ndarray | None = None) -> None:
        lab = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        lab = lab.astype(np.int64, copy=False)
        if lab.shape != (len(reader),):
            raise DataError(f"{len(reader)} images but labels of shape {tuple(lab.shape)}")
        self.reader = reader
        self._labels = lab
        self.class_names = tuple(class_names)
        self.name, self.split, self.source = name, split, source
        self.indices = np.arange(len(reader), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
        if lab.size and (int(lab.min()) < 0 or int(lab.max()) >= len(self.class_names)):
            raise DataError(f"labels {int(lab.min())}..{int(lab.max())} but {len(self.class_names)} classes")

    @classmethod
    def from_tensors(cls, images: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray | Sequence[int],
                     class_names: Sequence[str], name: str = "tensors", split: str = "all", source: str = "") -> ImageSet:
        """An ImageSet over images already in memory ((N, C, H, W), uint8 or float in [0, 1])."""
        return cls(ArrayReader(images), labels, class_names, name, split, source)

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"ImageSet({self.name!r}, split={self.split!r}, images={len(self)}, shape={self.input_shape})"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.reader.shape

    def fit_note(self) -> str | None:
        """What fitting stored images to :attr:`input_shape` changes, when it changes more than
        the size of images that all share one shape (a channel count or an aspect ratio), else
        None. Files of mixed sizes are always resized; this is for arrays of one stored shape,
        where a change says the model was trained on other data."""
        stored = getattr(self.reader, "stored_shape", None)
        if stored is None or tuple(stored) == self.input_shape:
            return None
        return describe_fit(tuple(stored), self.input_shape, self.name)

    @property
    def labels(self) -> torch.Tensor:
        """int64 (N,): the labels of this set's images, in order (no pixel is read)."""
        return torch.from_numpy(self._labels[self.indices])

    def _view(self, indices: np.ndarray) -> ImageSet:
        return ImageSet(self.reader, self._labels, self.class_names, self.name, self.split, self.source, indices=indices)

    def subset(self, limit: int | None = None, *, per_class: int | None = None,
               positions: Sequence[int] | np.ndarray | torch.Tensor | None = None) -> ImageSet:
        """A view (nothing is read): the first ``limit`` images, the first ``per_class`` of each
        class (kept in data order), or the images at ``positions``."""
        if positions is not None:
            pos = np.asarray(positions.cpu() if isinstance(positions, torch.Tensor) else positions, dtype=np.int64)
            if pos.size and (pos.min() < 0 or pos.max() >= len(self)):
                raise UsageError(f"positions must lie in 0..{len(self) - 1}")
            return self._view(self.indices[pos])
        if limit is not None and limit <= 0:
            raise UsageError(f"limit must be positive, got {limit}")
        if per_class is not None:
            if per_class <= 0:
                raise UsageError(f"per_class must be positive, got {per_class}")
            labels = self._labels[self.indices]
            keep = np.zeros(len(labels), dtype=bool)
            for c in range(len(self.class_names)):
                keep[np.flatnonzero(labels == c)[:per_class]] = True
            return self._view(self.indices[keep])
        return self._view(self.indices[: min(limit or len(self), len(self))])

    def take(self, positions: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """The images at ``positions`` as one float32 tensor in [0, 1] on the CPU: for a handful
        of images (one to explain, a switch-gate set), never for the whole set."""
        pos = np.asarray(positions.cpu() if isinstance(positions, torch.Tensor) else positions, dtype=np.int64)
        if pos.size == 0:
            c, h, w = self.input_shape
            return torch.zeros(0, c, h, w)
        if pos.min() < 0 or pos.max() >= len(self):
            raise UsageError(f"image positions must lie in 0..{len(self) - 1}")
        return to_unit(self.reader.read(self.indices[pos]))

    def batches(self, batch_size: int = 256, *, device: str | torch.device = "cpu", workers: int | None = None,
                start: int = 0, shard: tuple[int, int] | None = None) -> Iterator[Batch]:
        """The images in order, ``batch_size`` at a time, as float32 in [0, 1] on ``device``.

        Parameters
        ----------
        batch_size : int, default 256
        device : str or torch.device, default "cpu"
            uint8 batches are pinned (CUDA) and converted to float32 there.
        workers : int, optional
            DataLoader worker processes (default :func:`default_workers`).
        start : int, default 0
            Skip this many images of this process's share (a resumed pass); nothing is read for them.
        shard : (rank, world), optional
            Only every ``world``-th image from position ``rank`` (a torch.distributed process's share).

        Raises
        ------
        DataError
            An image cannot be read or decoded (the message names the file).
        """
        if batch_size <= 0:
            raise UsageError(f"batch_size must be positive, got {batch_size}")
        device = torch.device(device)
        positions = np.arange(len(self), dtype=np.int64)
        if shard is not None:
            rank, world = shard
            positions = positions[rank::world]
        positions = positions[start:]
        if len(positions) == 0:
            return
        n_workers = default_workers(self.reader) if workers is None else workers
        loader = torch.utils.data.DataLoader(
            _Samples(self.reader, self.indices, self._labels), batch_size=batch_size, sampler=positions.tolist(),
            num_workers=n_workers, collate_fn=_identity, pin_memory=device.type == "cuda",
            prefetch_factor=2 if n_workers else None, persistent_workers=False,
        )
        for item in loader:
            if isinstance(item[0], str):  # an error a worker caught: ("error", type name, message)
                raise (UsageError if item[1] == "UsageError" else DataError)(item[2])
            pixels, labels, pos = item
            yield Batch(to_unit(pixels.to(device, non_blocking=True)), labels.to(device, non_blocking=True), pos)

    def class_counts(self) -> list[int]:
        """Images per class (from the labels; nothing is read)."""
        return np.bincount(self._labels[self.indices], minlength=len(self.class_names)).tolist()


class Stream:
    """A data set as a model sees it: prepared (normalised) batches on a device, as often as asked.

    Iterating yields ``(inputs, labels)`` per batch, both on ``device``; each iteration reads
    the images again (nothing is kept between passes). What the experiments take where they
    used to take "all images as one tensor".

    Parameters
    ----------
    data : ImageSet
    prepare : callable, optional
        Applied to each [0, 1] batch on the device (a checkpoint's normalisation).
    device : str or torch.device, default "cpu"
    batch_size : int, default 256
    workers : int, optional
        See :meth:`ImageSet.batches`.
    """

    def __init__(self, data: ImageSet, prepare: Callable[[torch.Tensor], torch.Tensor] | None = None, *,
                 device: str | torch.device = "cpu", batch_size: int = 256, workers: int | None = None) -> None:
        self.data, self.prepare, self.device = data, prepare, torch.device(device)
        self.batch_size, self.workers = batch_size, workers

    def __len__(self) -> int:
        return len(self.data)

    @property
    def labels(self) -> torch.Tensor:
        """All labels in order, on the CPU (no pixel is read)."""
        return self.data.labels

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for b in self.data.batches(self.batch_size, device=self.device, workers=self.workers):
            yield (self.prepare(b.images) if self.prepare is not None else b.images), b.labels

    def subset(self, **selection: Any) -> Stream:
        """The same stream over ``data.subset(**selection)``."""
        return Stream(self.data.subset(**selection), self.prepare, device=self.device, batch_size=self.batch_size,
                      workers=self.workers)

    def take(self, positions: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """The prepared images at ``positions`` as one tensor on the device (a handful only)."""
        x = self.data.take(positions).to(self.device)
        return self.prepare(x) if self.prepare is not None else x
