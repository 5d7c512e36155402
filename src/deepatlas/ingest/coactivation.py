"""Run a model over a data set and summarise it as a co-activation graph (Horta & Mileo).

Nodes: the captured hidden units, one node per output class, and one per input pixel. The
class node's value per image is the model's softmax probability for that class (see
:data:`CLASS_VALUES`). Edge weight: Pearson correlation over the data set.

The images stream through the model batch by batch (:meth:`deepatlas.data.base.ImageSet.batches`:
DataLoader workers decode, uint8 until the device); nothing grows with the number of images
but the optional node store below. Two ways through the data, chosen by the size of the
unit-unit co-moment matrix (M x M):

- dense (it fits ``max_matrix_mb``): one pass accumulates everything; the result holds the
  full r matrix and the chosen pairs;
- blockwise (it does not): the first pass accumulates the pixel statistics, the confusion
  matrix and the first block of rows of the co-moments (rows x M); each further pass over the
  data accumulates the next block. Each block's r rows go straight to the pair selection of
  :mod:`deepatlas.ingest.pairs` (its row-wise rules) and are dropped. The first pass also
  keeps every image's node values (N x M, the model's dtype: 10,000 images x 3,914 ResNet-18
  nodes = 157 MB in float32) so that the later blocks read them instead of running the model
  again: in memory up to ``cache_mb``, else in a file (read back with plain reads, not a
  memory map, so resident memory stays at one batch) when the disk has room, else (or with
  ``cache_mb=0, spill=False``) one forward pass per block. The values read back are the ones
  the first pass saw, so the pairs are the dense path's.

Either way the pairs are chosen with one set of rules (:mod:`deepatlas.ingest.pairs`: a noise
floor for the number of images, per-node and per-run caps), so the result holds at most
M x ``max_degree`` unit-unit pairs, and :class:`~deepatlas.ingest.pairs.PairCounts` says how
many passed each filter.

Many processes (torch.distributed, :mod:`deepatlas.ingest.distributed`): each reads its share
of the images and accumulates on its own device; the accumulators are merged exactly
(:meth:`CoMoments.all_reduce_`) before r is computed. A long pass saves its accumulators
(:class:`~deepatlas.ingest.resume.ResumeState`) and continues after a kill from the last save.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deepatlas.data.base import ImageSet
from deepatlas.errors import IngestError, UsageError
from deepatlas.ingest.capture import ActivationRecorder, LayerSpec
from deepatlas.ingest.distributed import SINGLE, Dist
from deepatlas.ingest.pairs import (
    PairCounts,
    SparsifyParams,
    cap_pairs,
    class_top_k,
    merge_pairs,
    noise_floor,
    pairs_tested,
    select_block,
)
from deepatlas.ingest.ranks import RankSketch
from deepatlas.ingest.resume import ResumeState
from deepatlas.ingest.stats import CoMoments, Confusion, Correlation
from deepatlas.memory import StageMeter

__all__ = ["CLASS_VALUES", "CORRELATIONS", "FORWARD_MB", "MAX_CACHE_MB", "MAX_MATRIX_MB", "CoactivationResult", "SelectedPairs",
           "auto_batch_size", "compute_coactivation", "pixel_shape", "plan_blocks"]

#: Default memory budget for the unit-unit co-moment matrix: about 8,000 units dense in float64.
MAX_MATRIX_MB = 512.0

#: Default memory budget for the per-image node values a blockwise pass keeps (N x M).
MAX_CACHE_MB = 1024.0

#: Memory the model's forward pass may take per batch (CPU), which sets the automatic batch size.
FORWARD_MB = 1024.0

#: How a class node's per-image value is taken from the model's output.
#: "probs" (default): softmax probabilities. The co-activation paper correlates the output
#: layer's activations, which for a classifier is the softmax; r(neuron, P(class)) is then
#: close to the point-biserial correlation of the neuron with "the model says this class",
#: which is what "drives Sandal" means to a user. "logits": the raw scores, a linear
#: function of the last hidden layer (use it to see the linear read-out, unaffected by the
#: softmax's coupling of the classes).
CLASS_VALUES = ("probs", "logits")

#: The edge weight. "pearson" (default): the co-activation paper's Pearson r. "spearman":
#: Spearman's rho, Pearson's r of the mid-ranks (:mod:`deepatlas.ingest.ranks`: one extra pass
#: over the data, exact up to :data:`~deepatlas.ingest.ranks.RANK_BINS` images, a stated bound
#: beyond), for every edge that carries r (unit-unit, unit-class, pixel-unit).
CORRELATIONS = ("pearson", "spearman")


@dataclass(frozen=True)
class SelectedPairs:
    """The chosen node pairs: indices i < j into the M nodes, r, the rules and how many passed each."""

    i: np.ndarray
    j: np.ndarray
    r: np.ndarray
    params: SparsifyParams
    counts: PairCounts = field(default_factory=PairCounts)

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
        None after a blockwise pass (the chosen pairs are in ``pairs``).
    pixels : Correlation
        x = pixels (P = C*rows*cols of :attr:`pixel_shape`), y = the same M nodes.
    confusion : torch.Tensor
        (n_classes, n_classes) counts[true, predicted].
    input_shape : tuple of int
    pixel_shape : tuple of int
        (C, rows, cols) of the pixel grid (see :func:`pixel_shape`); (C, 0, 0) without pixels.
    n_samples : int
        Images seen (by every process together).
    seconds : dict of str to float
        Wall time per stage.
    pairs : SelectedPairs or None
        The chosen node pairs (None only when no ``sparsify`` rules were applied).
    passes : int
        Blocks of rows (1: dense).
    forward_passes : int
        Passes of the model over the data (1 unless blockwise without a node store).
    cache : {"none", "memory", "disk"}
        Where a blockwise pass kept the node values.
    batch_size : int
        Images per forward pass (chosen automatically unless given).
    correlation : {"pearson", "spearman"}
        What r is (see :data:`CORRELATIONS`); ``units`` and ``pixels`` then hold rho, while their
        means and standard deviations stay those of the raw values.
    rank_bins : int
        Spearman only: edges per variable of the rank sketch.
    rank_error_bound : float
        Spearman only: the most any stored rho can differ from the exact one (0: exact).
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
    batch_size: int = 0
    correlation: str = "pearson"
    rank_bins: int = 0
    rank_error_bound: float = 0.0

    @property
    def n_hidden(self) -> int:
        return sum(s.size for s in self.layers)

    @property
    def accuracy(self) -> float:
        return float(self.confusion.diagonal().sum()) / max(1, int(self.confusion.sum()))


def auto_batch_size(bytes_per_image: float, device: torch.device, *, budget_mb: float = FORWARD_MB, most: int = 500,
                    factor: float = 2.0) -> int:
    """Images per forward pass so that ``factor`` x the model's outputs per image fit the budget.

    ``bytes_per_image``: the summed output sizes of every module call for one image
    (:func:`deepatlas.models.sites.output_bytes`); ``factor`` 2 covers the functional
    operations between modules (a ResNet's ``+``, an ``F.relu``) that no module reports. On a
    GPU the budget is half of its free memory.
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget_mb = free / 2**20 / 2
    per = max(1.0, factor * bytes_per_image / 2**20)
    return int(max(1, min(most, budget_mb // per)))


def compute_coactivation(
    model: nn.Module,
    data: ImageSet,
    *,
    layers: Sequence[str] | None = None,
    batch_size: int | None = None,
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
    workers: int | None = None,
    dist: Dist = SINGLE,
    state: ResumeState | None = None,
    meter: StageMeter | None = None,
    correlation: str = "pearson",
) -> CoactivationResult:
    """Stream ``data`` through ``model`` and accumulate every correlation; choose the edges.

    Parameters
    ----------
    model : nn.Module
        Classifier returning (B, n_classes) logits. Put in eval mode here.
    data : ImageSet
    layers : sequence of str, optional
        Site or module names; default :func:`deepatlas.ingest.capture.default_layers`.
    batch_size : int, optional
        Images per forward pass; default :func:`auto_batch_size` from the model's output sizes.
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
        Memory budget for the unit-unit co-moments and the pixel statistics; a larger M x M
        goes blockwise (see the module docstring). None: always dense.
    sparsify : SparsifyParams, optional
        The pair rules (default ``SparsifyParams()``).
    cache_mb : float, default :data:`MAX_CACHE_MB`
        Blockwise only: memory for the N x M node values kept from the first pass (0: none).
    spill : bool, default True
        Blockwise only: when they exceed ``cache_mb``, keep them in a file instead (if the disk
        has twice their size free); False: run the model again per block.
    progress : callable, optional
        ``progress(images, total)`` after each batch; total counts every pass.
    pixel_grid : "auto", "off" or (rows, cols), default "auto"
        The Pixel nodes' grid (see :func:`pixel_shape`).
    amp : bool, default False
        Run the model's forward pass in reduced precision (float16 on CUDA, bfloat16 on a CPU);
        the statistics still accumulate in ``dtype``. A batch that runs out of device memory
        is split in halves either way (see :meth:`ActivationRecorder.record`).
    workers : int, optional
        DataLoader worker processes (see :meth:`ImageSet.batches`).
    dist : Dist, default one process
        This process's place in a torch.distributed job (:mod:`deepatlas.ingest.distributed`).
    state : ResumeState, optional
        Save the accumulators as the pass goes, and continue from what was saved.
    meter : StageMeter, optional
        Records the peak memory of each stage.
    correlation : {"pearson", "spearman"}, default "pearson"
        See :data:`CORRELATIONS`. Spearman adds one pass (stage "ranks") before the others.

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
    if correlation not in CORRELATIONS:
        raise UsageError(f"correlation must be one of {CORRELATIONS}, got {correlation!r}")
    if class_values not in CLASS_VALUES:
        raise UsageError(f"class_values must be one of {CLASS_VALUES}, got {class_values!r}")
    if batch_size is not None and batch_size <= 0:
        raise UsageError(f"batch_size must be positive, got {batch_size}")
    if len(data) < 2:
        raise UsageError("co-activation needs at least 2 images")
    t0 = time.perf_counter()
    meter = meter or StageMeter()
    with meter.stage("setup"):
        stream = _Stream.open(model, data, layers=layers, batch_size=batch_size, device=torch.device(device),
                              normalize=normalize, class_values=class_values, amp=amp, progress=progress, workers=workers,
                              dist=dist)
    m = stream.n_nodes
    grid = pixel_shape(data.input_shape, pixel_grid, n_nodes=m, max_matrix_mb=max_matrix_mb)
    rows = plan_blocks(m, max_matrix_mb, dtype.itemsize, grid[0] * grid[1] * grid[2])
    blocks = [(s, min(s + rows, m)) for s in range(0, m, rows)]
    if len(blocks) > 1:
        at = state.path("nodes") if state is not None else None
        stream.keep(_NodeStore.open(stream.local, m, stream.dtype, cache_mb, spill, at=at), passes=len(blocks))
    seconds = {"setup": time.perf_counter() - t0}
    try:
        if correlation == "pearson":
            return _passes(stream, data, grid, blocks, dtype, sparsify or SparsifyParams(), seconds, state, meter)
        t0 = time.perf_counter()
        with meter.stage("ranks"):
            bins = RankSketch.bins_for(m + grid[0] * grid[1] * grid[2], max_matrix_mb)  # within the co-moments' share
            node_ranks, pixel_ranks = _rank_sketches(stream, data, grid, bins, state)
        seconds["ranks"] = time.perf_counter() - t0
        result = _passes(stream, data, grid, blocks, dtype, sparsify or SparsifyParams(), seconds, state, meter,
                         pixel_ranks=pixel_ranks, spearman=True)
        return _raw_statistics(result, node_ranks, pixel_ranks, bins)
    finally:
        stream.close()  # the node store's temporary file goes, whatever happened


def _rank_sketches(stream: _Stream, data: ImageSet, grid: tuple[int, int, int], bins: int,
                   state: ResumeState | None) -> tuple[RankSketch, RankSketch | None]:
    """Spearman's first pass (:mod:`deepatlas.ingest.ranks`): edges from ``bins`` images spread
    over the data, then the counts over every image (this process's share, merged). From then on
    the stream yields ranks. A finished sketch is saved for ``--resume``; a kill inside this pass
    starts it again."""
    n, p = len(data), grid[0] * grid[1] * grid[2]
    positions = np.unique(np.linspace(0, n - 1, min(n, bins)).round().astype(np.int64))
    nodes_sample, pixel_sample = [], []
    for s in range(0, len(positions), stream.batch_size):
        raw = data.take(positions[s : s + stream.batch_size]).to(stream.device)
        nodes_sample.append(stream.nodes_of(raw).cpu())
        if p:
            pixel_sample.append(_pixels(raw, grid).cpu())
    node_values = torch.cat(nodes_sample).to(stream.device)
    pixel_values = torch.cat(pixel_sample).to(stream.device) if p else None
    del nodes_sample, pixel_sample
    node_ranks = RankSketch(node_values, bins)
    pixel_ranks = RankSketch(pixel_values, bins) if pixel_values is not None else None
    saved = state.load("ranks") if state is not None else None
    if saved is not None:
        node_ranks.load_state_dict(saved["nodes"])
        if pixel_ranks is not None:
            pixel_ranks.load_state_dict(saved["pixels"])
    elif len(positions) == n and stream.dist.world == 1:  # the sample is the whole data set: count it as it is
        node_ranks.update(node_values)
        if pixel_ranks is not None and pixel_values is not None:
            pixel_ranks.update(pixel_values)
    else:
        stream.total += len(data)
        for raw, _labels, nodes, _seen in stream.batches(store=False):
            node_ranks.update(nodes)
            if pixel_ranks is not None:
                pixel_ranks.update(_pixels(raw, grid))
        node_ranks.all_reduce_(stream.dist)
        if pixel_ranks is not None:
            pixel_ranks.all_reduce_(stream.dist)
    del node_values, pixel_values
    if state is not None and saved is None:
        state.save("ranks", {"nodes": node_ranks.state_dict(),
                             **({"pixels": pixel_ranks.state_dict()} if pixel_ranks is not None else {})})
    node_ranks.finish()
    if pixel_ranks is not None:
        pixel_ranks.finish()
    stream.ranks = node_ranks
    return node_ranks, pixel_ranks


def _raw_statistics(result: CoactivationResult, node_ranks: RankSketch, pixel_ranks: RankSketch | None,
                    bins: int) -> CoactivationResult:
    """A Spearman result keeps rho, with each node's and pixel's raw mean and spread (the Neuron
    and Pixel properties) in place of its ranks', and says how exact its rho is."""
    from dataclasses import replace

    from deepatlas.ingest.ranks import pair_bound, worst_ratio

    mean, std = node_ranks.mean.cpu(), node_ranks.std.cpu()
    units = replace(result.units, mean_x=mean, std_x=std, mean_y=mean, std_y=std)
    pixels = replace(result.pixels, mean_y=mean, std_y=std)
    a_nodes = worst_ratio(node_ranks)
    a_pixels = a_nodes
    if pixel_ranks is not None:
        pixels = replace(pixels, mean_x=pixel_ranks.mean.cpu(), std_x=pixel_ranks.std.cpu())
        a_pixels = worst_ratio(pixel_ranks)
    bound = max(pair_bound(a_nodes, a_nodes), pair_bound(a_pixels, a_nodes))
    return replace(result, units=units, pixels=pixels, correlation="spearman", rank_bins=bins,
                   rank_error_bound=bound)


def _passes(stream: _Stream, data: ImageSet, grid: tuple[int, int, int], blocks: list[tuple[int, int]], dtype: torch.dtype,
            params: SparsifyParams, seconds: dict[str, float], state: ResumeState | None,
            meter: StageMeter, *, pixel_ranks: RankSketch | None = None, spearman: bool = False) -> CoactivationResult:
    """The first pass over the data, then (blockwise) the later blocks: see the module docstring."""
    m, n_classes, dense = stream.n_nodes, len(data.class_names), len(blocks) == 1
    p = grid[0] * grid[1] * grid[2]
    dist = stream.dist
    # first pass: the pixel statistics, the confusion matrix and the first block of co-moments
    t0 = time.perf_counter()
    first = blocks[0][1]
    units = CoMoments(m, dtype=dtype, device=stream.device) if dense else CoMoments(first, m, dtype=dtype, device=stream.device)
    pixels = CoMoments(p, m, dtype=dtype, device=stream.device)
    confusion = Confusion(n_classes, device=stream.device)
    saved = state.load("pass1") if state is not None else None
    done = 0
    if saved is not None:
        units.load_state_dict(saved["units"])
        pixels.load_state_dict(saved["pixels"])
        confusion.counts.copy_(saved["confusion"])
        stream.restore(saved)
        done = int(saved["done"])

    def checkpoint(images_done: int) -> None:
        assert state is not None
        state.save("pass1", {"units": units.state_dict(), "pixels": pixels.state_dict(), "confusion": confusion.counts.cpu(),
                             "done": images_done, **stream.saved()}, images_done=int(dist.total(images_done)))

    with meter.stage("forward+stats"):
        for raw, labels, nodes, seen in stream.batches(start=done):
            if dense:
                units.update(nodes)
            else:
                units.update(nodes[:, :first], nodes)
            px = _pixels(raw, grid)
            pixels.update(px if pixel_ranks is None else pixel_ranks.transform(px), nodes)
            confusion.update(nodes[:, -n_classes:].argmax(1), labels)
            if state is not None and state.due():
                checkpoint(seen)
        if state is not None and state.due():  # a pass that took a while: keep it
            checkpoint(stream.local)
        stream.check_finite()
        units.all_reduce_(dist)
        pixels.all_reduce_(dist)
        confusion.all_reduce_(dist)
    seconds["forward+stats"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    with meter.stage("correlate+select"):
        pixel_corr = _to_cpu(pixels.compute(inplace=True))  # r takes the co-moments' place
        is_class, dead = np.arange(m) >= m - n_classes, pixel_corr.dead_y.numpy()
        counts = PairCounts()
        floor = noise_floor(pixel_corr.n, pairs_tested(is_class, dead), params.alpha, spearman=spearman)
        per_class = class_top_k(params, m - n_classes, n_classes)
        counts.floor, counts.class_top_k = floor, per_class

        def select(block: CoMoments, lo: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            block_r = block.compute(inplace=True).r
            assert block_r is not None
            return select_block(block_r.cpu().numpy(), lo, is_class, dead, params, floor=floor, per_class=per_class,
                                counts=counts)

        if dense:
            unit_corr = _to_cpu(units.compute(inplace=True))
            assert unit_corr.r is not None
            parts = [select_block(unit_corr.r.numpy(), 0, is_class, dead, params, floor=floor, per_class=per_class,
                                  counts=counts)]
            del units
        else:
            # per-node statistics come from the pixel accumulator's y side (the same M nodes)
            unit_corr = Correlation(None, pixel_corr.mean_y, pixel_corr.std_y, pixel_corr.dead_y, pixel_corr.mean_y,
                                    pixel_corr.std_y, pixel_corr.dead_y, pixel_corr.n)
            parts = [select(units, 0)]
            del units  # before the next block is allocated
    if not dense:
        parts += _blockwise_pairs(stream, blocks[1:], select, dtype, seconds, state, meter, counts)
    with meter.stage("correlate+select"):
        i, j, r = merge_pairs(parts, m)
        i, j, r = cap_pairs(i, j, r, is_class, params, counts)
    seconds["correlate+select"] = time.perf_counter() - t0 - seconds.get("more passes", 0.0)
    return CoactivationResult(
        layers=stream.recorder.layers,
        class_names=data.class_names,
        units=unit_corr,
        pixels=pixel_corr,
        confusion=confusion.compute(),
        input_shape=data.input_shape,
        pixel_shape=grid,
        n_samples=pixel_corr.n,
        class_values=stream.class_values,
        seconds=seconds,
        pairs=SelectedPairs(i, j, r, params, counts),
        passes=len(blocks),
        forward_passes=stream.forward_passes,
        cache=stream.cache,
        batch_size=stream.batch_size,
    )


def _blockwise_pairs(stream: _Stream, rest: list[tuple[int, int]],
                     select: Callable[[CoMoments, int], tuple[np.ndarray, np.ndarray, np.ndarray]], dtype: torch.dtype,
                     seconds: dict[str, float], state: ResumeState | None, meter: StageMeter,
                     counts: PairCounts) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The candidate pairs of each block of ``rest``: each reads the node values again from
    ``stream`` (its store, or one more forward pass), merges over the processes, and its r rows go
    to ``select`` and are dropped. A checkpoint after each block holds the pairs so far."""
    saved = state.load("blocks") if state is not None else None
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    done_blocks = 0
    if saved is not None:
        done_blocks = int(saved["blocks"])
        parts = [(saved["i"].numpy(), saved["j"].numpy(), saved["r"].numpy())]
        for name in ("tested", "above_floor", "above_min_r"):  # what the blocks done so far counted
            setattr(counts, name, getattr(counts, name) + int(saved[name]))
    seconds["more passes"] = 0.0
    # the counts the first block (done in the first pass) already holds: a save keeps only the later blocks'
    first_counts = {k: getattr(counts, k) for k in ("tested", "above_floor", "above_min_r")}
    if saved is not None:
        first_counts = {k: first_counts[k] - int(saved[k]) for k in first_counts}
    for b, (lo, hi) in enumerate(rest):
        if b < done_blocks:
            continue
        t1 = time.perf_counter()
        with meter.stage("more passes"):
            units = CoMoments(hi - lo, stream.n_nodes, dtype=dtype, device=stream.device)
            for nodes in stream.node_batches():
                units.update(nodes[:, lo:hi], nodes)
            units.all_reduce_(stream.dist)
        seconds["more passes"] += time.perf_counter() - t1
        with meter.stage("correlate+select"):
            parts.append(select(units, lo))
            del units
        if state is not None and state.due():
            i, j, r = merge_pairs(parts, stream.n_nodes)
            parts = [(i, j, r)]
            state.save("blocks", {"blocks": b + 1, "i": torch.from_numpy(i), "j": torch.from_numpy(j),
                                  "r": torch.from_numpy(r), **{k: getattr(counts, k) - first_counts[k] for k in first_counts}})
    return parts


class _Stream:
    """The model over the data, batch by batch: raw images, labels and node values.

    Node values are [hidden units..., classes...] per image. After :meth:`keep`, the first pass
    also writes them to a :class:`_NodeStore` that :meth:`node_batches` reads back; without a
    store, :meth:`node_batches` runs the model again. With several processes each reads its
    share (``dist.shard``); ``local`` is the size of that share.
    """

    def __init__(self, recorder: ActivationRecorder, data: ImageSet, prep: Callable[[torch.Tensor], torch.Tensor],
                 device: torch.device, batch_size: int, class_values: str, dtype: torch.dtype,
                 progress: Callable[[int, int], None] | None, workers: int | None, dist: Dist) -> None:
        self.recorder, self.data, self.prep, self.device = recorder, data, prep, device
        self.batch_size, self.class_values, self.dtype, self.progress = batch_size, class_values, dtype, progress
        self.workers, self.dist = workers, dist
        self.n_nodes = recorder.n_units + len(data.class_names)
        self.local = len(range(dist.rank, len(data), dist.world))
        self.store: _NodeStore | None = None
        self.ranks: RankSketch | None = None  # Spearman: node values become their ranks
        self.total = len(data)
        self.forward_passes = 0
        self._stored = False
        self._bad = torch.zeros((), dtype=torch.bool, device=device)

    @classmethod
    def open(cls, model: nn.Module, data: ImageSet, *, layers: Sequence[str] | None, batch_size: int | None,
             device: torch.device, normalize: Callable[[torch.Tensor], torch.Tensor] | None, class_values: str, amp: bool,
             progress: Callable[[int, int], None] | None, workers: int | None, dist: Dist) -> _Stream:
        """Hook ``layers`` of ``model`` and check it on two images: their shape and its output width."""
        from deepatlas.models.sites import output_bytes

        model = model.to(device).eval()
        prep = normalize or (lambda t: t)
        example = prep(data.take([0, 1]).to(device))
        try:
            recorder = ActivationRecorder(model, layers, example=example, autocast=amp)
        except RuntimeError as exc:
            raise IngestError(f"the model cannot take images of shape {data.input_shape}: {str(exc).splitlines()[0]}") from exc
        with torch.no_grad():
            logits = model(example)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise IngestError(f"the model must return (batch, classes) scores; it returned {_describe(logits)}")
        n_out, n_classes = logits.shape[-1], len(data.class_names)
        if n_out != n_classes:
            raise IngestError(f"the model outputs {n_out} scores but the data set has {n_classes} classes")
        if batch_size is None:
            batch_size = auto_batch_size(output_bytes(model, example[:1]), device)
        return cls(recorder, data, prep, device, batch_size, class_values, logits.dtype, progress, workers, dist)

    def keep(self, store: _NodeStore | None, passes: int) -> None:
        """Keep the first pass's node values in ``store``; without one, ``passes`` passes run the model."""
        self.store = store
        self.total = len(self.data) * (1 if store is not None else passes)

    @property
    def cache(self) -> str:
        return "none" if self.store is None else self.store.where

    def saved(self) -> dict[str, torch.Tensor]:
        """What a checkpoint of the first pass must hold besides the accumulators."""
        return {"bad": self._bad.cpu()}

    def restore(self, saved: dict[str, torch.Tensor]) -> None:
        self._bad |= saved["bad"].to(self.device)
        if self.store is not None:
            self.store.truncate(int(saved["done"]))

    def nodes_of(self, raw: torch.Tensor) -> torch.Tensor:
        """The node values [hidden units..., classes...] of a batch of [0, 1] images (not ranked)."""
        acts, out = self.recorder.record(self.prep(raw))
        self._bad |= ~torch.isfinite(out).all()  # checked once at the end: no per-batch sync
        cls = out.softmax(1) if self.class_values == "probs" else out
        return torch.cat([acts, cls], dim=1)

    def batches(self, start: int = 0, *, store: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
        """(raw images, labels, node values, images of this share done) per batch, from one
        forward pass of the model over this process's share, from its ``start``-th image. The
        first pass with ``store`` fills the node store; node values are ranks once :attr:`ranks` is set."""
        fill = store and self.store is not None and not self._stored
        self._stored = self._stored or fill
        self.forward_passes += 1
        seen = start
        if start and self.progress is not None:
            self.progress(start * self.dist.world, self.total)
        for batch in self.data.batches(self.batch_size, device=self.device, workers=self.workers, start=start,
                                       shard=self.dist.shard):
            raw, labels = batch.images, batch.labels
            nodes = self.nodes_of(raw)
            if self.ranks is not None:
                nodes = self.ranks.transform(nodes).to(nodes.dtype)
            if fill:
                assert self.store is not None
                self.store.put(seen, nodes)
            seen += int(raw.shape[0])
            yield raw, labels, nodes, seen
            if self.progress is not None:
                self.progress(int(raw.shape[0]) * self.dist.world, self.total)

    def node_batches(self) -> Iterator[torch.Tensor]:
        """The node values again: from the store, or by running the model once more."""
        if self.store is not None:
            for start in range(0, self.local, self.batch_size):
                yield self.store.get(start, min(start + self.batch_size, self.local), self.device)
        else:
            for _raw, _labels, nodes, _seen in self.batches():
                yield nodes

    def check_finite(self) -> None:
        bad = self.dist.total(float(bool(self._bad)))
        if bad:
            raise IngestError("the model produced NaN or Inf outputs on this data; nothing was stored")

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


class _NodeStore:
    """The first pass's node values (this process's share, n x m), in memory or in a file.

    The file is written in order as the pass goes and read back batch by batch with plain reads
    (a memory map would count every page read back as resident memory). A file given by
    ``at`` (a resumable ingest's folder) outlives a kill; a temporary one goes at :meth:`close`.
    """

    def __init__(self, values: np.ndarray | None, path: Path | None, n: int, m: int, dtype: np.dtype,
                 tmp: tempfile.TemporaryDirectory[str] | None) -> None:
        self.values, self.path, self.n, self.m, self.np_dtype, self._tmp = values, path, n, m, dtype, tmp
        self.where = "memory" if values is not None else "disk"

    @classmethod
    def open(cls, n: int, m: int, dtype: torch.dtype, cache_mb: float, spill: bool, *,
             at: Path | None = None) -> _NodeStore | None:
        """A store for (n, m) values of ``dtype``, or None when neither memory nor disk may hold it."""
        np_dtype = torch.empty((), dtype=dtype).numpy().dtype
        size = n * m * np_dtype.itemsize
        if size <= cache_mb * 2**20 and at is None:
            return cls(np.empty((n, m), dtype=np_dtype), None, n, m, np_dtype, None)
        if not spill:
            return None
        tmp = None
        if at is None:
            tmp = tempfile.TemporaryDirectory(prefix="deepatlas-nodes-")
            at = Path(tmp.name) / "nodes.bin"
        at.parent.mkdir(parents=True, exist_ok=True)
        if shutil.disk_usage(at.parent).free < 2 * size:
            if tmp is not None:
                tmp.cleanup()
            return None
        if not at.exists():
            at.write_bytes(b"")
        return cls(None, at, n, m, np_dtype, tmp)

    def put(self, start: int, nodes: torch.Tensor) -> None:
        arr = nodes.detach().cpu().numpy().astype(self.np_dtype, copy=False)
        if self.values is not None:
            self.values[start : start + arr.shape[0]] = arr
            return
        assert self.path is not None
        with open(self.path, "r+b") as f:
            f.seek(start * self.m * self.np_dtype.itemsize)
            f.write(np.ascontiguousarray(arr).tobytes())

    def get(self, start: int, stop: int, device: torch.device) -> torch.Tensor:
        if self.values is not None:
            return torch.from_numpy(np.ascontiguousarray(self.values[start:stop])).to(device)
        assert self.path is not None
        row = self.m * self.np_dtype.itemsize
        with open(self.path, "rb") as f:
            f.seek(start * row)
            buf = f.read((stop - start) * row)
        if len(buf) != (stop - start) * row:
            raise IngestError(f"the node values file {self.path} is shorter than the pass that wrote it")
        return torch.from_numpy(np.frombuffer(buf, dtype=self.np_dtype).reshape(stop - start, self.m).copy()).to(device)

    def truncate(self, rows: int) -> None:
        """Forget rows past ``rows`` (a resumed pass writes them again)."""
        if self.path is not None and self.path.exists():
            os.truncate(self.path, min(self.path.stat().st_size, rows * self.m * self.np_dtype.itemsize))

    def close(self) -> None:
        self.values = None
        if self._tmp is not None:
            self._tmp.cleanup()


def _to_cpu(c: Correlation) -> Correlation:
    return Correlation(None if c.r is None else c.r.cpu(), c.mean_x.cpu(), c.std_x.cpu(), c.dead_x.cpu(), c.mean_y.cpu(), c.std_y.cpu(),
                       c.dead_y.cpu(), c.n)
