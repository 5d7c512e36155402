"""Run a model over a data set and summarise it as a co-activation graph (Horta & Mileo).

Nodes: the captured hidden units, one node per output class, and one per input pixel. The
class node's value per image is the model's softmax probability for that class (see
:data:`CLASS_VALUES`). Edge weight: Pearson correlation over the data set.

Two ways through the data, chosen by the size of the unit-unit co-moment matrix (M x M):

- dense (it fits ``max_matrix_mb``): one pass accumulates everything, and the result holds
  the full r matrix;
- blockwise (it does not): the first pass accumulates the pixel statistics, the confusion
  matrix and the first block of rows of the co-moments (rows x M); each further pass over the
  data accumulates the next block. Each block's r rows go straight to the pair selection of
  :mod:`deepatlas.ingest.pairs` (threshold and per-node top-k are row-wise decisions) and are
  dropped. The first pass also keeps every image's node values (N x M, the model's dtype:
  10,000 images x 3,914 ResNet-18 nodes = 157 MB in float32) so that the later blocks read
  them instead of running the model again: in memory up to ``cache_mb``, else in a
  memory-mapped file in a temporary directory (removed at the end) when the disk has room,
  else (or with ``cache_mb=0, spill=False``) one forward pass per block as before. The
  values read back are the ones the first pass saw, so the pairs and r are the dense path's.
  The result then holds the chosen pairs instead of r.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from deepatlas.data.base import ImageSet
from deepatlas.errors import IngestError, UsageError
from deepatlas.ingest.capture import ActivationRecorder, LayerSpec
from deepatlas.ingest.pairs import SparsifyParams, merge_pairs, select_block
from deepatlas.ingest.stats import CoMoments, Confusion, Correlation

__all__ = ["CLASS_VALUES", "MAX_CACHE_MB", "MAX_MATRIX_MB", "CoactivationResult", "SelectedPairs", "compute_coactivation",
           "pixel_shape", "plan_blocks"]

#: Default memory budget for the unit-unit co-moment matrix: about 8,000 units dense in float64.
MAX_MATRIX_MB = 512.0

#: Default memory budget for the per-image node values a blockwise pass keeps (N x M).
MAX_CACHE_MB = 1024.0

#: How a class node's per-image value is taken from the model's output.
#: "probs" (default): softmax probabilities. The co-activation paper correlates the output
#: layer's activations, which for a classifier is the softmax; r(neuron, P(class)) is then
#: close to the point-biserial correlation of the neuron with "the model says this class",
#: which is what "drives Sandal" means to a user. "logits": the raw scores, a linear
#: function of the last hidden layer (use it to see the linear read-out, unaffected by the
#: softmax's coupling of the classes).
CLASS_VALUES = ("probs", "logits")


@dataclass(frozen=True)
class SelectedPairs:
    """Unit-unit pairs chosen during a blockwise pass: indices i < j into the M nodes, and r."""

    i: np.ndarray
    j: np.ndarray
    r: np.ndarray
    params: SparsifyParams

    def __len__(self) -> int:
        return len(self.i)


#: Pixel nodes: inputs up to this many positions per channel keep every pixel; larger ones are
#: average-pooled to :data:`PIXEL_GRID` per channel (``pixel_grid="auto"``).
NATIVE_PIXELS = 64 * 64
PIXEL_GRID = (32, 32)


def pixel_shape(input_shape: tuple[int, int, int], pixel_grid: str | tuple[int, int] = "auto", *,
                n_nodes: int = 0, max_matrix_mb: float | None = None) -> tuple[int, int, int]:
    """(channels, rows, cols) of the Pixel nodes for ``input_shape`` under ``pixel_grid``.

    ``"auto"``: the image itself when it has at most :data:`NATIVE_PIXELS` positions, else
    :data:`PIXEL_GRID` per channel (3x224x224 -> 3x32x32: 3,072 pixel nodes instead of 150,528),
    made coarser still when the pixel statistics would take more than a quarter of
    ``max_matrix_mb`` with ``n_nodes`` nodes (a square grid of side floor(sqrt(P / C)) with
    P = max_matrix_mb / 4 / (8 n_nodes)); ``"off"``: no pixel nodes, (C, 0, 0);
    ``(rows, cols)``: that grid (at most the image's size). Each grid cell is the mean of the
    image pixels it covers (adaptive average pooling), so its Pearson r is that of the region's
    mean brightness. The pixel statistics hold P x M co-moments, P = C * rows * cols and M =
    units + classes: 8 P M bytes in float64.
    """
    c, h, w = input_shape
    if pixel_grid == "off":
        return c, 0, 0
    if pixel_grid == "auto":
        gh, gw = (h, w) if h * w <= NATIVE_PIXELS else (min(h, PIXEL_GRID[0]), min(w, PIXEL_GRID[1]))
        if n_nodes and max_matrix_mb is not None and c * gh * gw * n_nodes * 8 > max_matrix_mb * 2**20 / 4:
            side = max(1, int((max_matrix_mb * 2**20 / 4 / (8 * n_nodes) / c) ** 0.5))
            gh, gw = min(gh, side), min(gw, side)
        return c, gh, gw
    if isinstance(pixel_grid, str) or len(pixel_grid) != 2 or min(pixel_grid) < 1:
        raise UsageError(f"pixel grid must be 'auto', 'off' or (rows, cols) >= 1, got {pixel_grid!r}")
    return c, min(h, int(pixel_grid[0])), min(w, int(pixel_grid[1]))


def _pixels(raw: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """(B, P): the raw images on the pixel grid, flattened channel-major."""
    _, gh, gw = shape
    if gh == 0:
        return raw.new_zeros(raw.shape[0], 0)
    if (gh, gw) != tuple(raw.shape[2:]):
        raw = nn.functional.adaptive_avg_pool2d(raw, (gh, gw))
    return raw.flatten(1)


def plan_blocks(n_nodes: int, max_matrix_mb: float | None, itemsize: int = 8, n_pixels: int = 0) -> int:
    """Rows of the co-moment matrix per pass: all ``n_nodes`` when the matrix fits the budget.

    The budget holds the pixel x node co-moments (kept for the whole first pass) and one block
    of node x node rows; r is computed in place of the block and the pair selection works on
    bands of about 4M entries, so the peak is the budget plus a few hundred MB, whatever M is.
    """
    if max_matrix_mb is None:
        return n_nodes
    if max_matrix_mb <= 0:
        raise UsageError(f"max_matrix_mb must be positive, got {max_matrix_mb}")
    pixel_mb = n_pixels * n_nodes * itemsize / 2**20
    if pixel_mb >= max_matrix_mb:
        raise UsageError(f"the pixel statistics alone need {pixel_mb:,.0f} MB of the {max_matrix_mb:,.0f} MB budget; "
                         "use a coarser --pixel-grid (e.g. 16x16, or off) or raise --max-matrix-mb")
    rows = int((max_matrix_mb - pixel_mb) * 2**20 // (n_nodes * itemsize))
    if rows < 1:
        raise UsageError(f"max_matrix_mb={max_matrix_mb} cannot hold one row of {n_nodes} co-moments; raise it")
    return min(rows, n_nodes)


@dataclass
class CoactivationResult:
    """Everything the graph is built from; all tensors on the CPU.

    Attributes
    ----------
    layers : tuple of LayerSpec
    class_names : tuple of str
    units : Correlation
        Symmetric, over [hidden units..., classes...] (M = hidden + n_classes). ``units.r`` is
        None after a blockwise pass; the chosen pairs are in ``pairs`` instead.
    pixels : Correlation
        x = pixels (P = C*rows*cols of :attr:`pixel_shape`), y = the same M nodes.
    confusion : torch.Tensor
        (n_classes, n_classes) counts[true, predicted].
    input_shape : tuple of int
    pixel_shape : tuple of int
        (C, rows, cols) of the pixel grid (see :func:`pixel_shape`); (C, 0, 0) without pixels.
    n_samples : int
    seconds : dict of str to float
        Wall time per stage.
    pairs : SelectedPairs or None
        The chosen unit pairs after a blockwise pass.
    passes : int
        Blocks of rows (1: dense).
    forward_passes : int
        Passes of the model over the data (1 unless blockwise without a cache).
    cache : {"none", "memory", "disk"}
        Where a blockwise pass kept the node values.
    """

    layers: tuple[LayerSpec, ...]
    class_names: tuple[str, ...]
    units: Correlation
    pixels: Correlation
    confusion: torch.Tensor
    input_shape: tuple[int, int, int]
    n_samples: int
    class_values: str
    seconds: dict[str, float] = field(default_factory=dict)
    pairs: SelectedPairs | None = None
    passes: int = 1
    forward_passes: int = 1
    cache: str = "none"
    pixel_shape: tuple[int, int, int] = (0, 0, 0)

    @property
    def n_hidden(self) -> int:
        return sum(s.size for s in self.layers)

    @property
    def accuracy(self) -> float:
        return float(self.confusion.diagonal().sum()) / max(1, int(self.confusion.sum()))


def compute_coactivation(
    model: nn.Module,
    data: ImageSet,
    *,
    layers: Sequence[str] | None = None,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    class_values: str = "probs",
    dtype: torch.dtype = torch.float64,
    max_matrix_mb: float | None = MAX_MATRIX_MB,
    sparsify: SparsifyParams | None = None,
    cache_mb: float = MAX_CACHE_MB,
    spill: bool = True,
    progress: Callable[[int, int], None] | None = None,
    pixel_grid: str | tuple[int, int] = "auto",
    amp: bool = False,
) -> CoactivationResult:
    """Stream ``data`` through ``model`` once and accumulate every correlation.

    Parameters
    ----------
    model : nn.Module
        Classifier returning (B, n_classes) logits. Put in eval mode here.
    data : ImageSet
    layers : sequence of str, optional
        Qualified module names; default: post-activation output of every conv/dense layer.
    batch_size : int, default 500
    device : str or torch.device, default "cpu"
        The model, the activations and the accumulators all live here.
    normalize : callable, optional
        Applied to each [0, 1] image batch before the model (the checkpoint's normalisation).
        Pixel correlations use the raw pixels; Pearson r is unchanged by affine maps anyway.
    class_values : {"probs", "logits"}, default "probs"
        See :data:`CLASS_VALUES`.
    dtype : torch.dtype, default torch.float64
        Accumulator precision.
    max_matrix_mb : float or None, default :data:`MAX_MATRIX_MB`
        Memory budget for the unit-unit co-moments; a larger M x M goes blockwise (see the
        module docstring). None: always dense.
    sparsify : SparsifyParams, optional
        The pair rules a blockwise pass applies as it goes (default ``SparsifyParams()``).
    cache_mb : float, default :data:`MAX_CACHE_MB`
        Blockwise only: memory for the N x M node values kept from the first pass (0: none).
    spill : bool, default True
        Blockwise only: when they exceed ``cache_mb``, keep them in a memory-mapped temporary
        file instead (if the disk has twice their size free); False: run the model again per block.
    progress : callable, optional
        ``progress(images, total)`` after each batch; total counts every pass.
    pixel_grid : "auto", "off" or (rows, cols), default "auto"
        The Pixel nodes' grid (see :func:`pixel_shape`).
    amp : bool, default False
        Run the model's forward pass in reduced precision (float16 on CUDA, bfloat16 on a CPU);
        the statistics still accumulate in ``dtype``. A batch that runs out of device memory
        is split in halves either way (see :meth:`ActivationRecorder.record`).

    Returns
    -------
    CoactivationResult

    Raises
    ------
    IngestError
        Bad layers, wrong image shape for the model, a model output with NaN/Inf, or an
        output width that differs from the number of class names.

    References
    ----------
    Horta, V. A. C. & Mileo, A. (2019), "Towards Explaining Deep Neural Networks Through Graph
    Analysis", DEXA 2019 workshops, CCIS 1062, Springer, doi:10.1007/978-3-030-27684-3_20.
    """
    if class_values not in CLASS_VALUES:
        raise UsageError(f"class_values must be one of {CLASS_VALUES}, got {class_values!r}")
    if batch_size <= 0:
        raise UsageError(f"batch_size must be positive, got {batch_size}")
    if len(data) < 2:
        raise UsageError("co-activation needs at least 2 images")
    t0 = time.perf_counter()
    stream = _Stream.open(model, data, layers=layers, batch_size=batch_size, device=torch.device(device),
                          normalize=normalize, class_values=class_values, amp=amp, progress=progress)
    m = stream.n_nodes
    grid = pixel_shape(data.input_shape, pixel_grid, n_nodes=m, max_matrix_mb=max_matrix_mb)
    rows = plan_blocks(m, max_matrix_mb, dtype.itemsize, grid[0] * grid[1] * grid[2])
    blocks = [(s, min(s + rows, m)) for s in range(0, m, rows)]
    if len(blocks) > 1:
        stream.keep(_NodeStore.open(len(data), m, stream.dtype, cache_mb, spill), passes=len(blocks))
    seconds = {"setup": time.perf_counter() - t0}
    try:
        return _passes(stream, data, grid, blocks, dtype, sparsify, seconds)
    finally:
        stream.close()  # the node store's temporary file goes, whatever happened


def _passes(stream: _Stream, data: ImageSet, grid: tuple[int, int, int], blocks: list[tuple[int, int]], dtype: torch.dtype,
            sparsify: SparsifyParams | None, seconds: dict[str, float]) -> CoactivationResult:
    """The first pass over the data, then (blockwise) the later blocks: see the module docstring."""
    m, n_classes, dense = stream.n_nodes, len(data.class_names), len(blocks) == 1
    p = grid[0] * grid[1] * grid[2]
    # first pass: the pixel statistics, the confusion matrix and the first block of co-moments
    t0 = time.perf_counter()
    first = blocks[0][1]
    units = CoMoments(m, dtype=dtype, device=stream.device) if dense else CoMoments(first, m, dtype=dtype, device=stream.device)
    pixels = CoMoments(p, m, dtype=dtype, device=stream.device)
    confusion = Confusion(n_classes, device=stream.device)
    for raw, labels, nodes in stream.batches():
        if dense:
            units.update(nodes)
        else:
            units.update(nodes[:, :first], nodes)
        pixels.update(_pixels(raw, grid), nodes)
        confusion.update(nodes[:, -n_classes:].argmax(1), labels)
    stream.check_finite()
    seconds["forward+stats"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    pixel_corr = _to_cpu(pixels.compute(inplace=True))
    selected: SelectedPairs | None = None
    if dense:
        unit_corr = _to_cpu(units.compute(inplace=True))
    else:
        # per-node statistics come from the pixel accumulator's y side (the same M nodes)
        unit_corr = Correlation(None, pixel_corr.mean_y, pixel_corr.std_y, pixel_corr.dead_y, pixel_corr.mean_y,
                                pixel_corr.std_y, pixel_corr.dead_y, pixel_corr.n)
        params = sparsify or SparsifyParams()
        is_class, dead = np.arange(m) >= m - n_classes, pixel_corr.dead_y.numpy()
        first_pairs = _select(units, 0, is_class, dead, params)
        del units  # before the next block is allocated
        selected = _blockwise_pairs(stream, first_pairs, blocks[1:], is_class, dead, params, dtype, seconds)
    seconds["correlate"] = time.perf_counter() - t0 - seconds.get("more passes", 0.0)
    return CoactivationResult(
        layers=stream.recorder.layers,
        class_names=data.class_names,
        units=unit_corr,
        pixels=pixel_corr,
        confusion=confusion.compute(),
        input_shape=data.input_shape,
        pixel_shape=grid,
        n_samples=len(data),
        class_values=stream.class_values,
        seconds=seconds,
        pairs=selected,
        passes=len(blocks),
        forward_passes=stream.forward_passes,
        cache=stream.cache,
    )


def _select(units: CoMoments, lo: int, is_class: np.ndarray, dead: np.ndarray,
            params: SparsifyParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs chosen from one block of co-moment rows starting at node ``lo`` (r computed in place)."""
    block_r = units.compute(inplace=True).r
    assert block_r is not None
    return select_block(block_r.cpu().numpy(), lo, is_class, dead, params)


def _blockwise_pairs(stream: _Stream, first: tuple[np.ndarray, np.ndarray, np.ndarray], rest: list[tuple[int, int]],
                     is_class: np.ndarray, dead: np.ndarray, params: SparsifyParams, dtype: torch.dtype,
                     seconds: dict[str, float]) -> SelectedPairs:
    """All chosen unit pairs: ``first`` (the first block's, from the first pass), then each block of ``rest``.

    Each later block reads the node values again from ``stream`` (its store, or one more
    forward pass); its r rows go to :func:`select_block` and are dropped.
    """
    parts = [first]
    seconds["more passes"] = 0.0
    for lo, hi in rest:
        t1 = time.perf_counter()
        units = CoMoments(hi - lo, stream.n_nodes, dtype=dtype, device=stream.device)
        for nodes in stream.node_batches():
            units.update(nodes[:, lo:hi], nodes)
        seconds["more passes"] += time.perf_counter() - t1
        parts.append(_select(units, lo, is_class, dead, params))
        del units
    i, j, r = merge_pairs(parts, stream.n_nodes)
    return SelectedPairs(i, j, r, params)


class _Stream:
    """The model over the data, batch by batch: raw images, labels and node values.

    Node values are [hidden units..., classes...] per image. After :meth:`keep`, the first pass
    also writes them to a :class:`_NodeStore` that :meth:`node_batches` reads back; without a
    store, :meth:`node_batches` runs the model again.
    """

    def __init__(self, recorder: ActivationRecorder, data: ImageSet, prep: Callable[[torch.Tensor], torch.Tensor],
                 device: torch.device, batch_size: int, class_values: str, dtype: torch.dtype,
                 progress: Callable[[int, int], None] | None) -> None:
        self.recorder, self.data, self.prep, self.device = recorder, data, prep, device
        self.batch_size, self.class_values, self.dtype, self.progress = batch_size, class_values, dtype, progress
        self.n_nodes = recorder.n_units + len(data.class_names)
        self.store: _NodeStore | None = None
        self.total = len(data)
        self.forward_passes = 0
        self._bad = torch.zeros((), dtype=torch.bool, device=device)

    @classmethod
    def open(cls, model: nn.Module, data: ImageSet, *, layers: Sequence[str] | None, batch_size: int, device: torch.device,
             normalize: Callable[[torch.Tensor], torch.Tensor] | None, class_values: str, amp: bool,
             progress: Callable[[int, int], None] | None) -> _Stream:
        """Hook ``layers`` of ``model`` and check it on two images: their shape and its output width."""
        model = model.to(device).eval()
        prep = normalize or (lambda t: t)
        example = prep(data.images[:2]).to(device)
        try:
            recorder = ActivationRecorder(model, layers, example=example, autocast=amp)
        except RuntimeError as exc:
            raise IngestError(f"the model cannot take images of shape {tuple(data.images.shape[1:])}: {str(exc).splitlines()[0]}") from exc
        with torch.no_grad():
            logits = model(example)
        n_out, n_classes = logits.shape[-1], len(data.class_names)
        if n_out != n_classes:
            raise IngestError(f"the model outputs {n_out} scores but the data set has {n_classes} classes")
        return cls(recorder, data, prep, device, batch_size, class_values, logits.dtype, progress)

    def keep(self, store: _NodeStore | None, passes: int) -> None:
        """Keep the first pass's node values in ``store``; without one, ``passes`` passes run the model."""
        self.store = store
        self.total = len(self.data) * (1 if store is not None else passes)

    @property
    def cache(self) -> str:
        return "none" if self.store is None else self.store.where

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(raw images, labels, node values) per batch, from one forward pass of the model."""
        self.forward_passes += 1
        data, b = self.data, self.batch_size
        for start in range(0, len(data), b):
            raw = data.images[start : start + b].to(self.device, non_blocking=True)
            labels = data.labels[start : start + b].to(self.device, non_blocking=True)
            acts, out = self.recorder.record(self.prep(raw))
            self._bad |= ~torch.isfinite(out).all()  # checked once at the end: no per-batch sync
            cls = out.softmax(1) if self.class_values == "probs" else out
            nodes = torch.cat([acts, cls], dim=1)
            if self.store is not None and self.forward_passes == 1:
                self.store.put(start, nodes)
            yield raw, labels, nodes
            if self.progress is not None:
                self.progress(int(raw.shape[0]), self.total)

    def node_batches(self) -> Iterator[torch.Tensor]:
        """The node values again: from the store, or by running the model once more."""
        if self.store is not None:
            for start in range(0, len(self.data), self.batch_size):
                yield self.store.get(start, start + self.batch_size, self.device)
        else:
            for _raw, _labels, nodes in self.batches():
                yield nodes

    def check_finite(self) -> None:
        if bool(self._bad):
            raise IngestError("the model produced NaN or Inf outputs on this data; nothing was stored")

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None


class _NodeStore:
    """The N x M node values of the first pass, in memory or in a memory-mapped temporary file."""

    def __init__(self, values: np.ndarray, where: str, tmp: tempfile.TemporaryDirectory[str] | None) -> None:
        self.values, self.where, self._tmp = values, where, tmp

    @classmethod
    def open(cls, n: int, m: int, dtype: torch.dtype, cache_mb: float, spill: bool) -> _NodeStore | None:
        """A store for (n, m) values of ``dtype``, or None when neither memory nor disk may hold it."""
        np_dtype = torch.empty((), dtype=dtype).numpy().dtype
        size = n * m * np_dtype.itemsize
        if size <= cache_mb * 2**20:
            return cls(np.empty((n, m), dtype=np_dtype), "memory", None)
        if not spill:
            return None
        tmp = tempfile.TemporaryDirectory(prefix="deepatlas-nodes-")
        if shutil.disk_usage(tmp.name).free < 2 * size:
            tmp.cleanup()
            return None
        values = np.lib.format.open_memmap(f"{tmp.name}/nodes.npy", mode="w+", dtype=np_dtype, shape=(n, m))
        return cls(values, "disk", tmp)

    def put(self, start: int, nodes: torch.Tensor) -> None:
        self.values[start : start + nodes.shape[0]] = nodes.detach().cpu().numpy()

    def get(self, start: int, stop: int, device: torch.device) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.values[start:stop])).to(device)

    def close(self) -> None:
        del self.values
        if self._tmp is not None:
            self._tmp.cleanup()


def _to_cpu(c: Correlation) -> Correlation:
    return Correlation(None if c.r is None else c.r.cpu(), c.mean_x.cpu(), c.std_x.cpu(), c.dead_x.cpu(), c.mean_y.cpu(), c.std_y.cpu(),
                       c.dead_y.cpu(), c.n)
