"""`deepatlas inspect`: what deepatlas can do with a model, before any real work.

One dry forward on a small batch lists every hook site (each call of each leaf module), the
default capture set, whether each method runs on this model (by trying it on the batch, not
by guessing from module types) and the memory and graph size an ingest would have.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from deepatlas.errors import DeepAtlasError, UsageError
from deepatlas.explain.gradients import PredictionGradients
from deepatlas.explain.influence import InfluentialScores
from deepatlas.explain.interventions import Intervention
from deepatlas.ingest.capture import CHANNELS_LAST, ActivationRecorder, default_layers, unit_kind
from deepatlas.ingest.coactivation import MAX_MATRIX_MB, pixel_shape, plan_blocks
from deepatlas.ingest.pairs import SparsifyParams
from deepatlas.models.sites import list_sites
from deepatlas.workspace import Result, Workspace

__all__ = ["METHODS", "Estimate", "InspectReport", "LayerRow", "inspect", "inspect_model"]

#: Methods whose support `inspect` reports.
METHODS = ("coactivation", "influence", "gradient", "knockout", "activate", "switchgate")


@dataclass(frozen=True)
class LayerRow:
    """One hook site: ``name`` (``module`` or ``module#call``), its module type, output shape,
    unit kind and count (None when it cannot be captured) and whether it is captured by default."""

    name: str
    type: str
    shape: tuple[int, ...]
    kind: str | None
    units: int | None
    default: bool


@dataclass(frozen=True)
class Estimate:
    """What an ingest with these settings holds and writes (before any data is seen).

    ``comoment_mb`` is the unit x unit matrix of one pass (bounded by ``max_matrix_mb``, then
    ``passes`` > 1); ``pixel_mb`` the pixel x node co-moments (8 P M bytes in float64).
    Co-activation edges: every hidden-class pair is stored, plus each node's ``top_k``
    strongest other pairs (at least), plus every other pair with |r| >= ``min_abs_r`` (data
    dependent: at most every pair).
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
    coactivation_edges_min: int
    coactivation_edges_max: int
    pixel_edges: int
    problem: str | None = None  # why an ingest with these settings would be refused


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


def inspect(ws: Workspace, *, images: int = 10_000, max_matrix_mb: float | None = MAX_MATRIX_MB,
            pixel_grid: str | tuple[int, int] = "auto", sparsify: SparsifyParams | None = None) -> InspectReport:
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
    return inspect_model(ckpt.model, example, name=ckpt.name, images=images, max_matrix_mb=max_matrix_mb,
                         pixel_grid=pixel_grid, sparsify=sparsify)


def inspect_model(
    model: nn.Module,
    example: torch.Tensor,
    *,
    name: str = "model",
    images: int = 10_000,
    max_matrix_mb: float | None = MAX_MATRIX_MB,
    pixel_grid: str | tuple[int, int] = "auto",
    sparsify: SparsifyParams | None = None,
) -> InspectReport:
    """List a model's layers, try every method on ``example`` and estimate an ingest.

    Parameters
    ----------
    model : nn.Module
        Put in eval mode here.
    example : Tensor (B, C, H, W)
        A small normalised batch (two images are enough).
    name : str
        For the report.
    images, max_matrix_mb, pixel_grid, sparsify
        The ingest settings to estimate for (see :func:`deepatlas.workflows.build.ingest`).

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
    rows = []
    for site in sites:
        kind, units = captured.get(site.name, (None, None))
        if kind is None and len(site.shape) >= 2:
            kind = unit_kind(sites, site, modules)
            units = None if kind == CHANNELS_LAST else int(site.shape[-1] if kind == "tokens" else site.shape[1])
        rows.append(LayerRow(site.name, site.type, site.shape, kind, units, site.name in defaults))
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
        params = sparsify or SparsifyParams()
        units = recorder.n_units
        m = units + n_classes
        shape = tuple(int(d) for d in example.shape[1:])
        grid = (pixel_shape((shape[0], shape[1], shape[2]), pixel_grid, n_nodes=m, max_matrix_mb=max_matrix_mb)
                if len(shape) == 3 else (0, 0, 0))
        p = grid[0] * grid[1] * grid[2]
        problem = None
        try:
            rows_per_pass = plan_blocks(m, max_matrix_mb, 8, p)
        except DeepAtlasError as exc:
            rows_per_pass, problem = 0, str(exc)
        passes = -(-m // rows_per_pass) if rows_per_pass else 0
        hidden_class = units * n_classes
        others = m * (m - 1) // 2 - hidden_class
        est = Estimate(
            images=images, units=units, classes=n_classes, pixels=p, pixel_grid=grid, passes=passes,
            comoment_mb=round(rows_per_pass * m * 8 / 2**20, 1), pixel_mb=round(p * m * 8 / 2**20, 1),
            nodes=units + n_classes + p + len(recorder.layers) + 1,
            coactivation_edges_min=hidden_class + min(others, m * params.top_k // 2),
            coactivation_edges_max=hidden_class + others,
            pixel_edges=m * min(params.pixel_top_k, p), problem=problem,
        )
    return InspectReport(name, tuple(int(d) for d in example.shape[1:]), n_classes, rows, defaults, methods, est)
