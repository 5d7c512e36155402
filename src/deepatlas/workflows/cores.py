"""Core units (Switch Gates) and latent factors (coupled NMF) as user-level jobs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepatlas.data.base import ImageSet, Stream
from deepatlas.db.experiments import unit_layers, write_experiment
from deepatlas.db.queries import resolve_class
from deepatlas.errors import CheckpointError, UsageError
from deepatlas.explain.factorize import UNIT_MODES, activation_matrices, coupled_nmf, spectra
from deepatlas.explain.switchgate import INPUT, SwitchGates
from deepatlas.ingest.capture import ActivationRecorder, _leaf_order, default_layers
from deepatlas.models.loading import as_checkpoint
from deepatlas.rows import class_key
from deepatlas.workflows.experiments import _base_predictions, _context
from deepatlas.workspace import Result, Workspace, optional

__all__ = [
    "CompareResult",
    "CoreUnitsResult",
    "FactorsResult",
    "default_gate_layer",
    "experiment_switchgate",
    "explain_compare",
    "explain_factors",
]


@dataclass
class CoreUnitsResult(Result):
    """A class's core units by Switch Gates, their holding rates, and random same-size baselines."""

    run: str
    class_name: str = field(metadata={"key": "class"})
    layers: list[str]
    kept: dict[str, list[int]]
    n_kept: dict[str, int]
    sizes: dict[str, int]
    holding_rate: float
    holding_rate_definition: str
    positive_holding_rate: float
    random_holding_rate: dict[str, Any]
    random_positive_holding_rate: dict[str, Any]
    holding_rate_yb: float
    holding_rate_yb_definition: str
    random_holding_rate_yb: dict[str, Any]
    open_holding_rate_yb: float
    alpha: float
    alpha_search: dict[str, Any] | None
    positives: int
    negatives: int
    final_fit: Any
    w_b: float
    params: dict[str, Any]
    repeats: dict[str, Any] | None = optional()
    removal_curve: dict[str, Any] | None = optional()
    removal_figure: str | None = optional()
    figure: str | None = optional()
    targets_layer: list[str] | None = optional()
    experiment: str | None = optional()


@dataclass
class FactorsResult(Result):
    """Coupled NMF of pixels and activations: error per rank, spectra, figures."""

    model: str
    images: int
    units: str
    pooled: bool
    rows: dict[str, dict[str, Any]]
    ranks: list[dict[str, Any]]
    spectra: dict[str, list[float]]
    figures: dict[str, str]


@dataclass
class CompareResult(Result):
    """RMSE-vs-rank and spectra of several models on the same images."""

    models: list[str]
    ranks: dict[str, list[dict[str, Any]]]
    spectra: dict[str, dict[str, list[float]]]
    figures: dict[str, str]


def default_gate_layer(model: nn.Module, example: torch.Tensor) -> str:
    """The last conv block's pooled output: the pooling module that runs right after the last
    conv layer's activation (else that activation itself)."""
    order = _leaf_order(model, example)
    modules = dict(model.named_modules())
    convs = [i for i, n in enumerate(order) if isinstance(modules[n], (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    if not convs:
        raise UsageError("the model has no conv layer; pass --layer")
    for name in order[convs[-1] + 1 :]:
        if isinstance(modules[name], (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.MaxPool1d, nn.AvgPool1d)):
            return name
        if isinstance(modules[name], (nn.Linear, nn.Flatten)):
            break
    return order[convs[-1] + 1] if convs[-1] + 1 < len(order) else order[convs[-1]]


def _neuron_layer_for(model: nn.Module, example: torch.Tensor, gate_layer: str, captured: list[dict[str, Any]]) -> str | None:
    """The captured layer whose units the gate layer's units are (same width, the latest one
    that runs before it): pool3 -> relu3."""
    if gate_layer in {c["name"] for c in captured}:
        return gate_layer
    order = _leaf_order(model, example)
    if gate_layer not in order:
        return None
    before = order[: order.index(gate_layer)]
    rec = ActivationRecorder(model, [gate_layer], example=example)
    width = rec.layers[0].size
    for name in reversed(before):
        for c in captured:
            if c["name"] == name and c["size"] == width:
                return name
    return None


def experiment_switchgate(
    ws: Workspace,
    class_name: str,
    *,
    layers: Sequence[str] | None = None,
    alpha: float | str | None = None,
    holding_target: float = 0.995,
    max_fits: int = 5,
    scores: str = "probs",
    train_wb: bool = True,
    lam: float = 1.0,
    steps: int = 400,
    per_side: int = 300,
    seeds: int = 5,
    seed: int = 0,
    repeats: int = 1,
    batch_size: int = 64,
    figure: bool = True,
    record: bool = True,
) -> CoreUnitsResult:
    """Switch-Gate core units of a class; an Experiment node whose TARGETS are the core units.

    D'_c, as in the paper: up to ``per_side`` of the run's images predicted as the class and as
    many randomly drawn (seeded by ``seed``) among those predicted as other classes. The gates
    train on seeded random mini-batches of ``batch_size``. ``holding_rate`` is the paper's
    (over D'_c: the verdict "class or not" unchanged); ``positive_holding_rate`` the share of
    the positives still predicted as the class.

    ``repeats`` > 1 runs the search again with seeds ``seed``, ``seed + 1``, ... (new negatives
    and a new mini-batch order each time) and reports how often each unit is kept (the paper's
    stability study); the first repeat is the reported result.

    Two holding rules are reported: ``holding_rate_yb`` (the paper's, p' = [y_b >= 0.5] with
    the learned w_b) and ``holding_rate`` (the arg-max rule), each with random same-size subsets
    judged by the same rule.

    ``alpha``: a number fixes it; ``"auto"`` tunes it per class (:meth:`SwitchGates.tune_alpha`,
    at most ``max_fits`` fits) to the largest alpha whose y_b-rule holding rate over D'_c
    reaches ``holding_target`` (default 0.995, the paper's "nearly 99.5%"). The default (None)
    is ``"auto"`` for unit layers (the paper's procedure) and 0.001 when the input is gated
    (trained on positives only, the y_b rule cannot guide alpha there: docs/REPRODUCTION.md).
    *Choice*: with ``repeats`` > 1 the alpha tuned in the first repeat is used for the others.
    ``scores`` ("probs" default, "logits" the earlier variant) and ``train_wb`` (False holds
    w_b at 1) are passed to :meth:`SwitchGates.fit`.

    References
    ----------
    Yan, H. & Feng, J. (2018), "Interpreting Deep Classification Models With Bayesian Inference",
    ICLR 2018 conference submission, OpenReview H1vCXOe0b.
    """
    if repeats < 1:
        raise UsageError("repeats must be >= 1")
    graph, progress = ws.graph, ws.progress
    ctx = _context(ws)
    stored = resolve_class(graph, ctx.run, class_name)
    c = ctx.classes.index(stored)
    net = ctx.ckpt.model
    gate_layers = list(layers) if layers else [default_gate_layer(net, ctx.inputs.take([0]))]
    preds = _base_predictions(ctx)
    positives = torch.nonzero(preds == c).flatten()
    others = torch.nonzero(preds != c).flatten()
    if len(positives) == 0:
        raise UsageError(f"the model predicts {stored} for none of the run's images")
    if len(others) == 0:
        raise UsageError(f"the model predicts {stored} for every image of the run; D'_c needs negatives")
    if alpha is None:
        alpha = 0.001 if INPUT in gate_layers else "auto"
    if isinstance(alpha, str) and alpha != "auto":
        raise UsageError(f"alpha must be a number or 'auto', not {alpha!r}")
    if isinstance(alpha, (int, float)) and alpha < 0:
        raise UsageError("alpha must be >= 0")
    sg = SwitchGates(net, gate_layers)
    fits = []
    total = steps * (repeats + (max_fits - 1 if alpha == "auto" else 0))
    chosen: float | None = None if alpha == "auto" else float(alpha)
    search: dict[str, Any] | None = None
    for rep in range(repeats):
        gen = torch.Generator().manual_seed(seed + rep)
        pos_idx = positives[torch.randperm(len(positives), generator=gen)[:per_side]].sort().values
        neg_idx = others[torch.randperm(len(others), generator=gen)[: len(pos_idx)]].sort().values
        pos_x = ctx.inputs.take(pos_idx)  # D'_c, drawn by position: only these images are read
        common: dict[str, Any] = {"lam": lam, "steps": steps, "batch_size": batch_size, "seed": seed + rep,
                                  "random_seeds": range(seeds), "scores": scores, "train_wb": train_wb,
                                  "progress": lambda n: progress("gates", n, total)}
        if chosen is None:
            r = sg.tune_alpha(pos_x, ctx.inputs.take(neg_idx), c, holding_target=holding_target, max_fits=max_fits,
                              **common)
            chosen = float(r.params["alpha"])
            search = {k: r.params[k] for k in ("alpha_search", "holding_target", "alpha_rule", "target_reached",
                                                "alpha_range", "max_fits")}
        else:
            r = sg.fit(pos_x, ctx.inputs.take(neg_idx), c, alpha=chosen, **common)
        fits.append((pos_idx, pos_x if rep == 0 else None, r))
    pos_idx, first_x, res = fits[0]
    assert first_x is not None
    pos_x = first_x
    neg_count = min(len(pos_idx), len(others))

    def spread(values: list[float]) -> dict[str, Any]:
        return {"mean": float(np.mean(values)) if values else float("nan"),
                "std": float(np.std(values)) if values else float("nan"), "values": values}

    result = CoreUnitsResult(
        run=ctx.run.name, class_name=stored, layers=gate_layers, kept=res.kept, n_kept=res.n_kept,
        sizes={n: int(g.numel()) for n, g in res.gates.items()},
        holding_rate=res.holding_rate,
        holding_rate_definition="arg-max rule: share of D'_c (positives + equal random negatives) whose verdict "
                                "'class or not' (the gated model's arg-max is the class) is unchanged with only the kept "
                                "units open",
        positive_holding_rate=res.positive_holding_rate,
        random_holding_rate=spread(res.random_holding_rates),
        random_positive_holding_rate=spread(res.random_positive_holding_rates),
        holding_rate_yb=res.holding_rate_yb,
        holding_rate_yb_definition="the paper's rule: share of D'_c whose verdict p' = [y_b >= 0.5] (center classifier "
                                   "on the gated model's scores, learned w_b) equals y' (1 for positives, 0 for negatives)",
        random_holding_rate_yb=spread(res.random_holding_rates_yb),
        open_holding_rate_yb=res.open_holding_rate_yb,
        alpha=float(res.params["alpha"]), alpha_search=search,
        positives=len(pos_idx), negatives=neg_count, final_fit=res.fit_history[-1], w_b=res.w_b,
        params={**res.params, "repeats": repeats, "per_side": per_side, "sd": res.sd},
    )
    if repeats > 1:
        freq: dict[str, dict[str, int]] = {}
        for layer in res.kept:
            counts: dict[int, int] = {}
            for _, _, r in fits:
                for u in r.kept[layer]:
                    counts[u] = counts.get(u, 0) + 1
            freq[layer] = {str(u): n for u, n in sorted(counts.items(), key=lambda t: (-t[1], t[0]))}
        result.repeats = {"n": repeats, "kept_count": freq,
                             "n_kept": [r.n_kept for _, _, r in fits],
                             "holding_rate": [r.holding_rate for _, _, r in fits],
                             "holding_rate_yb": [r.holding_rate_yb for _, _, r in fits],
                             "kept_in_every_repeat": {lay: [int(u) for u, n in f.items() if n == repeats]
                                                      for lay, f in freq.items()}}
    unit_layers_gated = [n for n in res.gates if n != INPUT]
    if unit_layers_gated:
        from deepatlas.explain.query import removal_curve

        name = unit_layers_gated[0]
        gates = res.gates[name].flatten()
        order = [int(i) for i in torch.argsort(gates, stable=True)]  # the least important (lowest gate) first
        curve = removal_curve(net, pos_x, c, name, order, len(order), seeds=range(seeds))
        result.removal_curve = {"layer": name, **curve}
        if figure:
            from deepatlas.report.experiments import removal_figure

            result.removal_figure = str(removal_figure(
                curve, f"{ctx.run.name}: {stored}, units of {name} removed by gate value", ws.out / f"switchgate-removal-{c}.png",
                ylabel=f"share of {stored} images still predicted {stored}\n(positives of D'_c)"))
    if figure and INPUT in res.gates:
        from deepatlas.report.figures import heatmap_grid

        g = res.gates[INPUT].cpu().numpy()
        img = g.reshape(g.shape[-2], g.shape[-1]) if g.ndim >= 2 else g
        result.figure = str(heatmap_grid([("gate of each input pixel", img)], ws.out / f"switchgate-input-{c}.png",
                                            columns=1, title=f"{ctx.run.name}\npixels that keep {stored}'s predictions",
                                            cmap="Greens", vmin=0.0, vmax=1.0, label="gate (0 closed, 1 open)"))
    if record:
        captured = unit_layers(graph, ctx.run)
        targets = []
        for layer, units in res.kept.items():
            neuron_layer = _neuron_layer_for(net, ctx.inputs.take([0]), layer, captured) if layer != INPUT else None
            if neuron_layer is not None:
                targets += [(neuron_layer, i) for i in units]
        result.targets_layer = sorted({t[0] for t in targets})
        result.experiment = write_experiment(graph, ctx.run, "switchgate",
                                             {"class": stored, "layers": gate_layers, **res.params}, result.to_json(), targets,
                                             [class_key(ctx.run.key, c)])
    return result


@torch.no_grad()
def _matrices(ckpt_model: nn.Module, data: ImageSet, normalize: Callable[[torch.Tensor], torch.Tensor],
              layers: Sequence[str] | None, device: torch.device, units: str,
              pooled: bool) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """Pixels (per channel) and each layer's activations as (rows, images) matrices, the images
    read batch by batch (the matrices are what the factorisation needs whole)."""
    net = ckpt_model.to(device).eval()
    channels = data.input_shape[0]
    columns: list[list[torch.Tensor]] = [[] for _ in range(channels)]
    for batch in data.batches(500):
        for ch in range(channels):
            columns[ch].append(batch.images[:, ch].flatten(1).T.double())
    mats: dict[str, torch.Tensor] = {}
    for ch in range(channels):
        mats["pixels" if channels == 1 else f"pixels[{ch}]"] = torch.cat(columns[ch], dim=1)
    del columns
    stream = Stream(data, normalize, device=device, batch_size=500)
    acts, info = activation_matrices(net, stream, list(layers or default_layers(net, stream.take([0]))), units=units,
                                     pooled=pooled)
    mats.update(acts)
    return mats, info


def _unlabelled_sample(data: ImageSet, images: int, seed: int) -> ImageSet:
    """``images`` images drawn at random (seeded) without looking at the labels."""
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[: min(images, len(data))].sort().values
    return data.subset(positions=idx)


def explain_factors(
    ws: Workspace,
    ranks: Sequence[int],
    *,
    images: int = 2000,
    layers: Sequence[str] | None = None,
    units: str = "maps",
    pooled: bool = True,
    iters: int = 300,
    seed: int = 0,
) -> FactorsResult:
    """Coupled NMF of pixels and activations for each rank: RMSE per rank, spectra, figures.

    The model is ``ws.model``; the images a seeded random sample of ``images`` of ``ws.data``
    (no labels used); figures go to ``ws.out``. Each layer's matrix
    holds every neuron of every feature map (``units="maps"``, the paper's; after the layer's
    pooling when ``pooled``) or one row per channel (``units="channel-means"``, a variant).

    References
    ----------
    Saini, U. S. & Papalexakis, E. E. (2021), "Analyzing representations inside convolutional
    neural networks", arXiv:2012.07229.
    """
    ranks = sorted(set(ranks))
    if not ranks or ranks[0] < 1:
        raise UsageError(f"ranks must be >= 1, got {list(ranks)}")
    if images < 2:
        raise UsageError("images must be >= 2")
    if units not in UNIT_MODES:
        raise UsageError(f"units must be one of {', '.join(UNIT_MODES)}, got {units!r}")
    from deepatlas.workflows.explain import _images

    ckpt, all_images = _images(ws)
    progress = ws.progress
    data = _unlabelled_sample(all_images, images, seed)
    mats, info = _matrices(ckpt.model, data, ckpt.normalize, layers, ws.device, units, pooled)
    results = []
    best = None
    for r in ranks:
        fit = coupled_nmf(mats, r, iters=iters, seed=seed)
        results.append({"rank": r, "rmse": fit.rmse, "relative_error": fit.relative_error})
        best = fit
        progress("factor", 1, len(ranks))
    sp = spectra({k: v for k, v in mats.items() if not k.startswith("pixels")})
    out = ws.out
    from deepatlas.report.factors import factor_heatmaps, latent_images, rmse_figure, spectra_figure

    assert best is not None
    h, w = data.input_shape[1:]
    figures = {
        "rmse": str(rmse_figure({ckpt.path.name if ckpt.path else "model": results}, out / "factors-rmse.png")),
        "spectra": str(spectra_figure({ckpt.path.name if ckpt.path else "model": sp}, out / "factors-spectra.png")),
        "latent_images": str(latent_images(best.loadings[next(k for k in mats if k.startswith("pixels"))], (h, w),
                                           out / f"factors-latent-r{best.rank}.png")),
        "heatmaps": str(factor_heatmaps({k: v for k, v in best.loadings.items() if not k.startswith("pixels")},
                                        out / f"factors-units-r{best.rank}.png")),
    }
    return FactorsResult(str(ws.model.spec if ws.model.spec is not None else ckpt.path), len(data), units, pooled, info,
                         results, sp, figures)


def explain_compare(
    ws: Workspace,
    models: Sequence[str | Path],
    ranks: Sequence[int],
    *,
    images: int = 2000,
    units: str = "maps",
    pooled: bool = True,
    iters: int = 300,
    seed: int = 0,
) -> CompareResult:
    """The factorisation paper's training-quality diagnostic: RMSE-vs-rank and spectra of several
    checkpoints on the same (unlabelled) images (``ws.data``; figures under ``ws.out``)."""
    if len(models) < 2:
        raise UsageError("compare needs at least two checkpoints")
    missing = [str(m) for m in models if not Path(m).is_file()]
    if missing:  # before any factorisation: a typo must not cost the first model's minutes
        raise CheckpointError(f"checkpoint {', '.join(missing)} does not exist")
    for m in models:
        as_checkpoint(m)  # unreadable or foreign files fail here too, before the work
    per: dict[str, list[dict[str, Any]]] = {}
    spec: dict[str, dict[str, list[float]]] = {}
    for m in models:
        one = Workspace(model=m, data=ws.data, device=ws.device_name, out_dir=ws.out / Path(m).stem, progress=ws.progress)
        res = explain_factors(one, ranks, images=images, units=units, pooled=pooled, iters=iters, seed=seed)
        per[Path(m).name] = res.ranks
        spec[Path(m).name] = res.spectra
    from deepatlas.report.factors import rmse_figure, spectra_figure

    return CompareResult([str(m) for m in models], per, spec, {
        "rmse": str(rmse_figure(per, ws.out / "compare-rmse.png")),
        "spectra": str(spectra_figure(spec, ws.out / "compare-spectra.png"))})
