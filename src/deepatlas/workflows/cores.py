"""Core units (Switch Gates) and latent factors (coupled NMF) as user-level jobs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepatlas.data.base import ImageSet
from deepatlas.data.formats import load_data
from deepatlas.db.experiments import unit_layers, write_experiment
from deepatlas.db.graph import Graph
from deepatlas.db.queries import resolve_class
from deepatlas.errors import UsageError
from deepatlas.explain.factorize import coupled_nmf, spectra
from deepatlas.explain.switchgate import INPUT, SwitchGates
from deepatlas.ingest.capture import ActivationRecorder, _leaf_order, default_layers
from deepatlas.models.loading import as_checkpoint
from deepatlas.workflows.build import Progress, _noop, pick_device
from deepatlas.workflows.experiments import _base_predictions, _context

__all__ = ["default_gate_layer", "experiment_switchgate", "explain_compare", "explain_factors"]


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
    graph: Graph,
    class_name: str,
    *,
    run: str | None = None,
    layers: Sequence[str] | None = None,
    alpha: float | None = None,
    lam: float = 1.0,
    steps: int = 400,
    per_side: int = 300,
    seeds: int = 5,
    model: str | Path | None = None,
    device: str = "auto",
    out_dir: str | Path | None = None,
    record: bool = True,
    progress: Progress = _noop,
) -> dict[str, Any]:
    """Switch-Gate core units of a class; an Experiment node whose TARGETS are the core units.

    The balanced set: up to ``per_side`` of the run's images predicted as the class, and as
    many predicted as other classes (spread evenly over them).

    ``alpha`` defaults to 0.02 for unit layers and 0.001 when the input is gated: the price is
    per gate, and 784 pixel gates at 0.02 close every one (both values measured on the
    reference CNN; docs/REPRODUCTION.md).
    """
    ctx = _context(graph, run, model, None, device)
    stored = resolve_class(graph, ctx.run, class_name)
    c = ctx.classes.index(stored)
    net = ctx.ckpt.model
    gate_layers = list(layers) if layers else [default_gate_layer(net, ctx.inputs[:1])]
    preds = _base_predictions(ctx)
    pos_idx = torch.nonzero(preds == c).flatten()[:per_side]
    others = torch.nonzero(preds != c).flatten()
    if len(pos_idx) == 0:
        raise UsageError(f"the model predicts {stored} for none of the run's images")
    neg_idx = others[torch.linspace(0, len(others) - 1, min(len(pos_idx), len(others))).long()]
    if alpha is None:
        alpha = 0.001 if INPUT in gate_layers else 0.02
    sg = SwitchGates(net, gate_layers)
    res = sg.fit(ctx.inputs[pos_idx], ctx.inputs[neg_idx], c, alpha=alpha, lam=lam, steps=steps,
                 random_seeds=range(seeds), progress=lambda n: progress("gates", n, steps))
    result: dict[str, Any] = {
        "class": stored, "layers": gate_layers, "kept": res.kept, "n_kept": res.n_kept,
        "sizes": {n: int(g.numel()) for n, g in res.gates.items()},
        "holding_rate": res.holding_rate, "random_holding_rate": {
            "mean": float(np.mean(res.random_holding_rates)), "std": float(np.std(res.random_holding_rates)),
            "values": res.random_holding_rates},
        "positives": len(pos_idx), "negatives": len(neg_idx), "final_fit": res.fit_history[-1], "params": res.params,
    }
    unit_layers_gated = [n for n in res.gates if n != INPUT]
    if unit_layers_gated:
        from deepatlas.explain.query import removal_curve

        name = unit_layers_gated[0]
        gates = res.gates[name].flatten()
        order = [int(i) for i in torch.argsort(gates, stable=True)]  # the least important (lowest gate) first
        curve = removal_curve(net, ctx.inputs[pos_idx], c, name, order, len(order), seeds=range(seeds))
        result["removal_curve"] = {"layer": name, **curve}
        if out_dir is not None:
            from deepatlas.report.experiments import removal_figure

            result["removal_figure"] = str(removal_figure(
                curve, f"{ctx.run.name}: {stored}, units of {name} removed by gate value", Path(out_dir) / f"switchgate-removal-{c}.png"))
    if out_dir is not None and INPUT in res.gates:
        from deepatlas.report.figures import heatmap_grid

        g = res.gates[INPUT].cpu().numpy()
        img = g.reshape(g.shape[-2], g.shape[-1]) if g.ndim >= 2 else g
        result["figure"] = str(heatmap_grid([(f"{stored}: input gates", img)], Path(out_dir) / f"switchgate-input-{c}.png",
                                            columns=1, title=f"informative pixels: {stored}", cmap="Greens", vmin=0.0,
                                            vmax=1.0, label="gate value"))
    if record:
        captured = unit_layers(graph, ctx.run)
        targets = []
        for layer, units in res.kept.items():
            neuron_layer = _neuron_layer_for(net, ctx.inputs[:1], layer, captured) if layer != INPUT else None
            if neuron_layer is not None:
                targets += [(neuron_layer, i) for i in units]
        result["targets_layer"] = sorted({t[0] for t in targets})
        result["experiment"] = write_experiment(graph, ctx.run, "switchgate",
                                                {"class": stored, "layers": gate_layers, **res.params}, result, targets,
                                                [f"{ctx.run.key}/class/{c}"])
    result["run"] = ctx.run.name
    return result


@torch.no_grad()
def _matrices(ckpt_model: nn.Module, data: ImageSet, normalize: Callable[[torch.Tensor], torch.Tensor],
              layers: Sequence[str] | None, device: torch.device) -> dict[str, torch.Tensor]:
    """Pixels (per channel) and each layer's unit activations as (rows, images) matrices."""
    x = normalize(data.images).to(device)
    rec = ActivationRecorder(ckpt_model.to(device).eval(), layers or default_layers(ckpt_model, x[:1]), example=x[:1])
    chunks = [rec.record(x[s : s + 500])[0] for s in range(0, len(x), 500)]
    acts = torch.cat(chunks).cpu()
    mats: dict[str, torch.Tensor] = {}
    for ch in range(data.images.shape[1]):
        mats["pixels" if data.images.shape[1] == 1 else f"pixels[{ch}]"] = data.images[:, ch].flatten(1).T.double()
    j = 0
    for spec in rec.layers:
        mats[spec.name] = acts[:, j : j + spec.size].T.double().clamp_min(0)
        j += spec.size
    return mats


def explain_factors(
    model: str | Path,
    ranks: Sequence[int],
    *,
    images: int = 2000,
    split: str = "test",
    layers: Sequence[str] | None = None,
    iters: int = 300,
    seed: int = 0,
    device: str = "auto",
    out_dir: str | Path = ".",
    progress: Progress = _noop,
) -> dict[str, Any]:
    """Coupled NMF of pixels and activations for each rank: RMSE per rank, spectra, figures."""
    ranks = sorted(set(ranks))
    if not ranks or ranks[0] < 1:
        raise UsageError(f"ranks must be >= 1, got {list(ranks)}")
    if images < 2:
        raise UsageError("images must be >= 2")
    ckpt = as_checkpoint(model)
    data = load_data(ckpt.meta.get("dataset", "fashion-mnist"), split,
                     input_shape=ckpt.meta.get("input_shape")).subset(per_class=max(1, images // 10))
    mats = _matrices(ckpt.model, data, ckpt.normalize, layers, pick_device(device))
    results = []
    best = None
    for r in ranks:
        fit = coupled_nmf(mats, r, iters=iters, seed=seed)
        results.append({"rank": r, "rmse": fit.rmse, "relative_error": fit.relative_error})
        best = fit
        progress("factor", 1, len(ranks))
    sp = spectra({k: v for k, v in mats.items() if not k.startswith("pixels")})
    out = Path(out_dir)
    from deepatlas.report.factors import factor_heatmaps, latent_images, rmse_figure, spectra_figure

    assert best is not None
    h, w = data.images.shape[-2:]
    figures = {
        "rmse": str(rmse_figure({ckpt.path.name if ckpt.path else "model": results}, out / "factors-rmse.png")),
        "spectra": str(spectra_figure({ckpt.path.name if ckpt.path else "model": sp}, out / "factors-spectra.png")),
        "latent_images": str(latent_images(best.loadings[next(k for k in mats if k.startswith("pixels"))], (h, w),
                                           out / f"factors-latent-r{best.rank}.png")),
        "heatmaps": str(factor_heatmaps({k: v for k, v in best.loadings.items() if not k.startswith("pixels")},
                                        out / f"factors-units-r{best.rank}.png")),
    }
    return {"model": str(model), "images": len(data), "ranks": results, "spectra": sp, "figures": figures}


def explain_compare(
    models: Sequence[str | Path],
    ranks: Sequence[int],
    *,
    images: int = 2000,
    split: str = "test",
    iters: int = 300,
    seed: int = 0,
    device: str = "auto",
    out_dir: str | Path = ".",
    progress: Progress = _noop,
) -> dict[str, Any]:
    """The factorisation paper's training-quality diagnostic: RMSE-vs-rank and spectra of several
    checkpoints on the same (unlabelled) images."""
    if len(models) < 2:
        raise UsageError("compare needs at least two checkpoints")
    per: dict[str, list[dict[str, Any]]] = {}
    spec: dict[str, dict[str, list[float]]] = {}
    for m in models:
        res = explain_factors(m, ranks, images=images, split=split, iters=iters, seed=seed, device=device,
                              out_dir=Path(out_dir) / Path(m).stem, progress=progress)
        per[Path(m).name] = res["ranks"]
        spec[Path(m).name] = res["spectra"]
    from deepatlas.report.factors import rmse_figure, spectra_figure

    return {"models": [str(m) for m in models], "ranks": per, "spectra": spec, "figures": {
        "rmse": str(rmse_figure(per, Path(out_dir) / "compare-rmse.png")),
        "spectra": str(spectra_figure(spec, Path(out_dir) / "compare-spectra.png"))}}
