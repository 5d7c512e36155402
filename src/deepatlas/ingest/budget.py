"""What an ingest will hold and take, stage by stage, before it starts.

`deepatlas inspect` shows this plan and the ingest checks it against the machine's free memory
before any work. Sizes come from the model (one dry forward pass: units, the summed size of
its module outputs per image, its parameters) and from the settings; times from two timed
passes on the dry batch. Each stage's memory is counted above the process's resident size
once the model is loaded (``baseline``):

==================  ===========================================================================
stage               what it holds
==================  ===========================================================================
forward+stats       co-moments (one block of rows x M, float64) + pixel statistics (P x M) +
                    the forward pass (batch x module outputs x :data:`FORWARD_LIVE`) + the
                    decoded batches in flight (workers x 2 x batch, uint8) + a blockwise pass's
                    node values when they stay in memory (N x M, float32)
ranks (Spearman)    the sample images' node and pixel values (K x V float32, twice while joined) +
                    the rank sketches (V x E x :data:`~deepatlas.ingest.ranks.BYTES_PER_EDGE`) +
                    the forward pass + a slice of a batch being counted (:data:`RANK_SLICE_MB`);
                    the sketches stay through the next two stages, with a batch of ranks
correlate+select    co-moments turned into r in place + pixel statistics + the selection's
                    bands (:data:`SELECT_MB`) + the candidate pairs (M x max_degree x 24 bytes)
gradient, influence pixel r (kept for the write) + the backward pass (batch x module outputs x
                    :data:`BACKWARD_LIVE`) + one class's summed maps (module outputs x 2)
write               pixel r + a write batch in flight (:data:`WRITE_MB`)
==================  ===========================================================================

The constants were measured on stock torchvision models (bench/RESULTS.md, "Stock models"):
the estimate is checked against the measured peak by ``tests/e2e/test_memory_budget.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from deepatlas.ingest.pairs import SparsifyParams, class_top_k

__all__ = ["BACKWARD_LIVE", "FORWARD_LIVE", "RANK_SLICE_MB", "SELECT_MB", "WRITE_MB", "IngestPlan", "ModelSizes", "plan_ingest"]

#: Share of the summed module outputs (per image, times the batch) alive at once in a no-grad
#: forward pass (intermediate outputs are freed as the pass goes; concatenating blocks keep more).
FORWARD_LIVE = 0.6
#: The same for a backward pass: autograd keeps every output, and the gradients come on top.
BACKWARD_LIVE = 2.5
#: Temporaries of the pair selection: bands of about 4M entries of r, ~60 bytes each.
SELECT_MB = 250.0
#: A write batch in flight: the rows as Python objects, the driver's packed copy, allocator slack.
WRITE_MB = 320.0
#: A slice of a batch being counted or ranked (ranks.CHUNK_VALUES x ranks.BYTES_PER_VALUE).
RANK_SLICE_MB = 80.0
#: Rough rates for the time estimate: Bolt rows per second and pixel-vector numbers per second.
WRITE_ROWS_PER_S = 20_000.0
WRITE_FLOATS_PER_S = 1.5e6


@dataclass(frozen=True)
class ModelSizes:
    """What the plan needs to know about a model (measured on a dry batch).

    Attributes
    ----------
    units, classes : int
        Captured units (default layers) and output width.
    input_shape : (C, H, W)
    output_mb : float
        Summed module outputs of one image (:func:`deepatlas.models.sites.output_bytes`), MB.
    forward_s, backward_s : float
        Seconds per image for a no-grad forward pass and for a gradient pass.
    between_sweeps : int
        Backward sweeps per batch that neuron->neuron influence takes (one per pair with one
        weighted layer between, one per upper unit otherwise).
    """

    units: int
    classes: int
    input_shape: tuple[int, int, int]
    output_mb: float
    forward_s: float = 0.0
    backward_s: float = 0.0
    between_sweeps: int = 0


@dataclass
class IngestPlan:
    """Memory (MB above the baseline) and seconds per stage, and the choices behind them."""

    images: int
    batch_size: int
    backward_batch: int
    pixel_grid: tuple[int, int, int]
    passes: int
    cache: str
    comoment_mb: float
    pixel_mb: float
    memory_mb: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    edges_max: dict[str, int] = field(default_factory=dict)
    between: bool = False
    problem: str | None = None
    rank_bins: int = 0  #: Spearman: edges per variable of the rank sketches (0: Pearson)

    @property
    def peak_mb(self) -> float:
        return max(self.memory_mb.values(), default=0.0)


def plan_ingest(sizes: ModelSizes, images: int, *, memory_mb: float, max_matrix_mb: float | None = None,
                sparsify: SparsifyParams | None = None, pixel_grid: str | tuple[int, int] = "auto",
                batch_size: int | None = None, backward_batch: int | None = None, workers: int = 0,
                edges: tuple[str, ...] = ("coactivation", "influence", "gradient"), attribution_per_class: int = 100,
                between_samples: int | None = None, between_limit: int = 1_000, correlation: str = "pearson") -> IngestPlan:
    """The stage-by-stage plan of an ingest of ``images`` images (see the module docstring)."""
    from deepatlas.errors import DeepAtlasError
    from deepatlas.ingest.coactivation import FORWARD_MB, pixel_shape, plan_blocks

    params = sparsify or SparsifyParams()
    matrix_mb = max_matrix_mb if max_matrix_mb is not None else memory_mb / 4
    m = sizes.units + sizes.classes
    grid = pixel_shape(sizes.input_shape, pixel_grid, n_nodes=m, max_matrix_mb=matrix_mb)
    p = grid[0] * grid[1] * grid[2]
    problem = None
    try:
        rows = plan_blocks(m, matrix_mb, 8, p)
    except DeepAtlasError as exc:
        rows, problem = m, str(exc)
    passes = -(-m // rows)
    batch = batch_size or int(max(1, min(500, FORWARD_MB // max(1e-6, 2 * sizes.output_mb))))
    back = backward_batch or int(max(1, min(200, FORWARD_MB // max(1e-6, 4 * sizes.output_mb))))
    comoments = rows * m * 8 / 2**20
    pixels = p * m * 8 / 2**20
    store = images * m * 4 / 2**20 if passes > 1 else 0.0
    cache = "none" if passes == 1 else ("memory" if store <= memory_mb / 2 else "disk")
    in_flight = workers * 2 * batch * math.prod(sizes.input_shape) / 2**20
    plan = IngestPlan(images, batch, back, grid, passes, cache, round(comoments, 1), round(pixels, 1), problem=problem)
    forward = FORWARD_LIVE * batch * sizes.output_mb
    sketch = rank_batch = 0.0
    if correlation == "spearman":
        from deepatlas.ingest.ranks import BYTES_PER_EDGE, RankSketch

        variables = m + p
        bins = RankSketch.bins_for(variables, matrix_mb)  # as compute_coactivation chooses
        sample = min(images, bins) * variables * 4 / 2**20
        sketch = variables * min(images, bins) * BYTES_PER_EDGE / 2**20
        rank_batch = batch * variables * 4 / 2**20 + RANK_SLICE_MB
        plan.rank_bins = bins
        plan.memory_mb["ranks"] = 2 * sample + sketch + forward + in_flight + RANK_SLICE_MB
    plan.memory_mb["forward+stats"] = (comoments + pixels + forward + in_flight + sketch + rank_batch
                                       + (store if cache == "memory" else 0.0))
    candidates = m * params.max_degree * 24 * 2 / 2**20
    plan.memory_mb["correlate+select"] = comoments + pixels + SELECT_MB + candidates + sketch
    per_class = class_top_k(params, sizes.units, sizes.classes)
    attributed = min(images, attribution_per_class * sizes.classes)
    if "gradient" in edges or "influence" in edges:
        plan.memory_mb["gradient"] = pixels + BACKWARD_LIVE * back * sizes.output_mb + 2 * sizes.output_mb
    plan.memory_mb["write"] = pixels + WRITE_MB
    plan.memory_mb = {k: round(v, 1) for k, v in plan.memory_mb.items()}
    # edges: the caps bound them whatever the data
    unit_unit = min(params.max_edges, m * params.max_degree // 2)
    plan.edges_max = {"COACTIVATES": unit_unit + per_class * sizes.classes + m * min(params.pixel_top_k, p)}
    if "gradient" in edges:
        plan.edges_max["GRADIENT"] = per_class * sizes.classes
    between_images = 200 if between_samples is None else between_samples
    sweeps = sizes.between_sweeps * max(1, -(-min(between_images, images) // min(back, 100)))
    plan.between = "influence" in edges and between_images > 0 and (between_samples is not None or sweeps <= between_limit)
    if "influence" in edges:
        plan.edges_max["INFLUENCES"] = per_class * sizes.classes + (sizes.units * params.influence_top_k if plan.between else 0)
    # time
    plan.seconds["forward+stats"] = images * sizes.forward_s * (passes if cache == "none" else 1)
    if correlation == "spearman":  # the sample's pass, and the counting pass when the sample is not every image
        plan.seconds["ranks"] = (min(images, plan.rank_bins) + (images if images > plan.rank_bins else 0)) * sizes.forward_s
    plan.seconds["correlate+select"] = m * m * 2e-8
    if "gradient" in edges:
        plan.seconds["gradient"] = attributed * sizes.backward_s
    if "influence" in edges:
        plan.seconds["influence"] = attributed * sizes.backward_s * 2
        if plan.between:
            plan.seconds["between"] = sweeps * sizes.backward_s * min(back, 100, between_images)
    rows_written = sum(plan.edges_max.values()) + m + p
    plan.seconds["write"] = rows_written / WRITE_ROWS_PER_S + m * p / WRITE_FLOATS_PER_S
    plan.seconds = {k: round(v, 1) for k, v in plan.seconds.items()}
    return plan
