"""`deepatlas inspect`: what deepatlas can do with a model, before any real work.

One dry forward on a small batch lists every hook site (each call of each leaf module) with
the block it belongs to, the default capture set, whether each method runs on this model (by
trying it on the batch, not by guessing from module types) and what an ingest would take,
stage by stage (:mod:`deepatlas.ingest.budget`): peak memory, time and edges, refused up front
when the peak would not fit the machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from deepatlas.errors import DeepAtlasError, UsageError
from deepatlas.explain.aggregate import between_sweeps
from deepatlas.explain.gradients import PredictionGradients
from deepatlas.explain.influence import InfluentialScores
from deepatlas.explain.interventions import Intervention
from deepatlas.ingest.budget import IngestPlan, ModelSizes, plan_ingest
from deepatlas.ingest.capture import (
    CHANNELS_LAST,
    ActivationRecorder,
    block_of,
    blocks,
    default_layers,
    unit_kind,
)
from deepatlas.ingest.pairs import SparsifyParams
from deepatlas.memory import available_mb, rss_mb
from deepatlas.models.sites import list_sites, output_bytes
from deepatlas.workspace import Result, Workspace

__all__ = ["BASELINE_EXTRA_MB", "METHODS", "Estimate", "InspectReport", "LayerRow", "estimate", "fits", "inspect",
           "inspect_model"]

#: What an ingest process holds beyond `inspect`'s at the same point (the Neo4j driver, the
#: DataLoader), MB.
BASELINE_EXTRA_MB = 60.0

#: Methods whose support `inspect` reports.
METHODS = ("coactivation", "influence", "gradient", "knockout", "activate", "switchgate")


@dataclass(frozen=True)
class LayerRow:
    """One hook site: ``name`` (``module`` or ``module#call``; a whole block is its module name),
    its module type, output shape, unit kind and count (None when it cannot be captured),
    whether it is captured by default, and the block it belongs to (None outside blocks)."""

    name: str
    type: str
    shape: tuple[int, ...]
    kind: str | None
    units: int | None
    default: bool
    block: str | None = None


@dataclass(frozen=True)
class Estimate:
    """What an ingest with these settings would hold, take and write (before any data is seen).

    ``memory_mb`` and ``seconds`` are per stage (:mod:`deepatlas.ingest.budget`); memory above
    ``baseline_mb`` (this process with the model loaded). ``peak_mb`` is the whole process's
    expected peak; ``available_mb`` what the machine has free. ``edges_max``: what the caps
    allow per relationship type (the data decides how many of them pass the noise floor).
    ``problem``: why an ingest with these settings would be refused, and what would fit.
    """

    images: int
    units: int
    classes: int
    pixels: int
    pixel_grid: tuple[int, int, int]
    passes: int
    comoment_mb: float
    pixel_mb: float
    nodes: int
    batch_size: int
    memory_mb: dict[str, float]
    seconds: dict[str, float]
    baseline_mb: float
    peak_mb: float
    available_mb: float
    edges_max: dict[str, int]
    between: bool
    problem: str | None = None  # why an ingest with these settings would be refused
    correlation: str = "pearson"  # the co-activation planned for (Spearman adds the "ranks" stage)
    rank_bins: int = 0  # Spearman: edges per variable of the rank sketches


@dataclass
class InspectReport(Result):
    """A model's layers, default capture set, method support and an ingest's estimate."""

    model: str
    input_shape: tuple[int, ...]
    classes: int
    layers: list[LayerRow]
    default_layers: list[str]
    methods: dict[str, str | None] = field(default_factory=dict)  # method -> None (works) or the reason not
    estimate: Estimate | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def inspect(ws: Workspace, *, images: int = 10_000, memory_mb: float = 2048.0, max_matrix_mb: float | None = None,
            pixel_grid: str | tuple[int, int] = "auto", sparsify: SparsifyParams | None = None,
            batch_size: int | None = None, correlation: str = "pearson") -> InspectReport:
    """:func:`inspect_model` on the Workspace's model, with two seeded random images of its
    input shape as the dry batch.

    Raises
    ------
    UsageError
        The model's input shape is not known (a torchvision:/factory model without
        ``--input-size`` or a sidecar).
    """
    ckpt = ws.checkpoint()
    shape = tuple(int(d) for d in ckpt.meta.get("input_shape") or ())
    if len(shape) != 3 or min(shape) < 1:
        raise UsageError("the model's input shape is not known; pass --input-size CxHxW (e.g. 3x224x224)")
    example = ckpt.normalize(torch.rand(2, *shape, generator=torch.Generator().manual_seed(0)))
    return inspect_model(ckpt.model, example, name=ckpt.name, images=images, memory_mb=memory_mb, max_matrix_mb=max_matrix_mb,
                         pixel_grid=pixel_grid, sparsify=sparsify, batch_size=batch_size, correlation=correlation)


def inspect_model(
    model: nn.Module,
    example: torch.Tensor,
    *,
    name: str = "model",
    images: int = 10_000,
    memory_mb: float = 2048.0,
    max_matrix_mb: float | None = None,
    pixel_grid: str | tuple[int, int] = "auto",
    sparsify: SparsifyParams | None = None,
    batch_size: int | None = None,
    correlation: str = "pearson",
) -> InspectReport:
    """List a model's layers, try every method on ``example`` and plan an ingest.

    Parameters
    ----------
    model : nn.Module
        Put in eval mode here.
    example : Tensor (B, C, H, W)
        A small normalised batch (two images are enough).
    name : str
        For the report.
    images, memory_mb, max_matrix_mb, pixel_grid, sparsify, batch_size, correlation
        The ingest settings to plan for (see :func:`deepatlas.workflows.build.ingest`).

    Returns
    -------
    InspectReport
    """
    model = model.eval()
    sites = list_sites(model, example)
    with torch.no_grad():
        n_classes = int(model(example).shape[-1])
    methods: dict[str, str | None] = {}
    try:
        defaults = default_layers(model, example)
        recorder = ActivationRecorder(model, defaults, example=example)
        methods["coactivation"] = None
    except DeepAtlasError as exc:
        defaults, recorder = [], None
        methods["coactivation"] = str(exc)
    captured = {s.name: (s.kind, s.size) for s in recorder.layers} if recorder else {}
    modules = dict(model.named_modules())
    block_names = blocks(model)
    rows = []
    for b in block_names:  # a whole block is a choice of its own (its output)
        if b in captured:
            continue
        rows.append(_block_row(model, b, example))
    for site in sites:
        kind, units = captured.get(site.name, (None, None))
        if kind is None and len(site.shape) >= 2:
            kind = unit_kind(sites, site, modules)
            units = None if kind == CHANNELS_LAST else int(site.shape[-1] if kind == "tokens" else site.shape[1])
        rows.append(LayerRow(site.name, site.type, site.shape, kind, units, site.name in defaults,
                             block_of(site.module, block_names)))
    if recorder is not None:
        for spec in recorder.layers:  # the default blocks, with their shapes
            if spec.name in block_names:
                site = next(s for s in recorder.sites if s.name == spec.name)
                rows.append(LayerRow(spec.name, site.type, site.shape, spec.kind, spec.size, True, spec.name))
    order = {s.name: s.order for s in sites}
    last_leaf = {b: max((s.order for s in sites if s.module.startswith(b + ".")), default=0) for b in block_names}
    rows.sort(key=lambda r: (last_leaf.get(r.name, order.get(r.name, 0)) + (0.5 if r.name in last_leaf else 0.0)))
    target = 0
    try:
        InfluentialScores(model).attribute(example[:1], target=target)
        methods["influence"] = None
    except DeepAtlasError as exc:
        methods["influence"] = str(exc)
    try:
        PredictionGradients(model).attribute(example[:1], target=target)
        methods["gradient"] = None
    except (DeepAtlasError, RuntimeError) as exc:
        methods["gradient"] = str(exc).splitlines()[0]
    if recorder is None:
        for method in ("knockout", "activate", "switchgate"):
            methods[method] = "no layer to intervene on: " + str(methods["coactivation"])
    else:
        spec = recorder.layers[0]
        kinds = {s.name: s.kind for s in recorder.layers}
        try:
            with Intervention(model, kinds=kinds).knockout({spec.name: [0]}), torch.no_grad():
                model(example)
            methods["knockout"] = methods["activate"] = methods["switchgate"] = None
        except DeepAtlasError as exc:
            methods["knockout"] = methods["activate"] = methods["switchgate"] = str(exc)
    est = None
    if recorder is not None:
        est = estimate(model, example, recorder, n_classes, images=images, memory_mb=memory_mb, max_matrix_mb=max_matrix_mb,
                       pixel_grid=pixel_grid, sparsify=sparsify, batch_size=batch_size,
                       influence=methods["influence"] is None, correlation=correlation)
    return InspectReport(name, tuple(int(d) for d in example.shape[1:]), n_classes, rows, defaults, methods, est)


def _block_row(model: nn.Module, name: str, example: torch.Tensor) -> LayerRow:
    """A block that is not in the default set, as a row (its output shape from one forward pass)."""
    try:
        rec = ActivationRecorder(model, [name], example=example)
        spec = rec.layers[0]
        return LayerRow(name, rec.sites[0].type, rec.sites[0].shape, spec.kind, spec.size, False, name)
    except DeepAtlasError:
        return LayerRow(name, type(model.get_submodule(name)).__name__, (), None, None, False, name)


def _timed(fn: Callable[[], object], images: int) -> float:
    """Seconds per image of ``fn`` (best of two, after a warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best / images


def estimate(model: nn.Module, example: torch.Tensor, recorder: ActivationRecorder, n_classes: int, *, images: int,
             memory_mb: float, max_matrix_mb: float | None = None, pixel_grid: str | tuple[int, int] = "auto",
             sparsify: SparsifyParams | None = None, batch_size: int | None = None, influence: bool = True,
             correlation: str = "pearson") -> Estimate:
    """The ingest plan for ``model`` (see :mod:`deepatlas.ingest.budget`), with the machine's
    free memory and, when the peak would not fit, the reason and the flags that would."""
    params = sparsify or SparsifyParams()
    shape = (int(example.shape[1]), int(example.shape[2]), int(example.shape[3])) if example.ndim == 4 else (0, 0, 0)
    layers = [s.name for s in recorder.layers]
    pg = PredictionGradients(model)
    with torch.no_grad():
        forward_s = _timed(lambda: model(example), len(example))
    backward_s = _timed(lambda: pg.attribute_layers(example, 0, layers), len(example))
    sweeps = between_sweeps(model, example[:1], layers, [s.size for s in recorder.layers]) if influence and len(layers) > 1 else 0
    sizes = ModelSizes(recorder.n_units, n_classes, shape, output_bytes(model, example[:1]) / 2**20, forward_s, backward_s,
                       sweeps)
    plan = plan_ingest(sizes, images, memory_mb=memory_mb, max_matrix_mb=max_matrix_mb, sparsify=params,
                       pixel_grid=pixel_grid, batch_size=batch_size,
                       edges=("coactivation", "influence", "gradient") if influence else ("coactivation", "gradient"),
                       correlation=correlation)
    baseline = rss_mb() + BASELINE_EXTRA_MB
    peak = baseline + plan.peak_mb
    free = available_mb()
    problem = plan.problem
    if problem is None and free and plan.peak_mb > free:
        problem = (f"the ingest would need about {plan.peak_mb:,.0f} MB more than this process holds, and "
                   f"{free:,.0f} MB are free; {fits(plan)}")
    p = plan.pixel_grid[0] * plan.pixel_grid[1] * plan.pixel_grid[2]
    return Estimate(
        images=images, units=recorder.n_units, classes=n_classes, pixels=p, pixel_grid=plan.pixel_grid, passes=plan.passes,
        comoment_mb=plan.comoment_mb, pixel_mb=plan.pixel_mb, nodes=recorder.n_units + n_classes + p + len(layers) + 2,
        batch_size=plan.batch_size, memory_mb=plan.memory_mb, seconds=plan.seconds, baseline_mb=round(baseline, 1),
        peak_mb=round(peak, 1), available_mb=round(free, 1), edges_max=plan.edges_max, between=plan.between, problem=problem,
        correlation=correlation, rank_bins=plan.rank_bins,
    )


def fits(plan: IngestPlan) -> str:
    """What to change so that a plan fits: the stage that dominates, and the flag that shrinks it."""
    top = max(plan.memory_mb, key=lambda k: plan.memory_mb[k])
    if top in ("forward+stats", "gradient") and plan.batch_size > 1:
        return f"lower --batch-size (now {plan.batch_size}) or capture fewer --layers"
    return "lower --memory-mb (the co-moments and node values are a share of it), or pass --pixel-grid off"
