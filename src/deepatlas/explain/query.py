"""Asking the model about one input (Lo, "Querying deep neural networks with gradients").

- :func:`characteristic_feature`  the captured unit and spatial position with the largest
  prediction gradient dy_c/dA ("the highest PG indicates which filter and region contributes
  most": the thesis' definition, the default), or, as an option, the largest activation times
  prediction gradient A * dy_c/dA.
- :func:`single_step_sweep`       the thesis' perturbation: one step x + eps * dy_C/dx for each
  step size eps; success at the target and the error it induces.
- :func:`perturb_toward`          a variant: iterative normalised steps along dy_C/dx, projected
  onto the valid pixel range, with the model's confidence per step.
- :func:`removal_curve`           a verdict's holding rate as units are removed in a given order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from deepatlas.errors import UsageError
from deepatlas.explain._hooks import capture_outputs
from deepatlas.explain.switchgate import holding_rate

__all__ = ["FEATURE_SCORES", "Feature", "characteristic_feature", "perturb_toward", "removal_curve", "single_step_sweep"]

#: What the characteristic feature maximises: the PG map itself (the thesis) or activation x PG.
FEATURE_SCORES = ("pg", "activation-x-pg")


@dataclass(frozen=True)
class Feature:
    """The winning unit, its position in the layer's map, the input region it covers, the score.

    ``region`` is (x0, y0, x1, y1) in input pixels, end-exclusive: the block of the input that
    the map position corresponds to (input size / map size per axis; *choice*: the position's
    stride cell, not its whole receptive field, so regions tile the image). None for dense units.
    """

    layer: str
    unit: int
    position: tuple[int, int] | None
    region: tuple[int, int, int, int] | None
    score: float
    activation_map: np.ndarray
    gradient_map: np.ndarray


def characteristic_feature(model: nn.Module, x: torch.Tensor, target: int, layers: Sequence[str], *,
                           score: str = "pg", output: str = "logit") -> Feature:
    """The (layer, unit, position) with the largest prediction gradient over the given layers,
    for one input.

    Parameters
    ----------
    x : Tensor (1, C, H, W)
    target : int
        Output node (class).
    layers : names of modules whose outputs are searched
    score : {"pg", "activation-x-pg"}, default "pg"
        Maximise dy/dA (the thesis: "the highest PG indicates which filter and region
        contributes most") or A * dy/dA (a variant: it also asks the unit to be active).
    output : {"logit", "prob"}, default "logit"
        y is the class's logit or its softmax probability.

    References
    ----------
    Lo, H. Z. (2016), "Querying Deep Neural Networks with Gradients", M.S. thesis, University of
    Massachusetts Boston (characteristic features).
    """
    if score not in FEATURE_SCORES:
        raise UsageError(f"score must be one of {FEATURE_SCORES}, got {score!r}")
    if output not in ("logit", "prob"):
        raise UsageError(f"output must be logit or prob, got {output!r}")
    if x.shape[0] != 1:
        raise UsageError("characteristic_feature takes one input")
    if not 0 <= target:
        raise UsageError("target must be a class index")
    with torch.enable_grad():
        with capture_outputs(model, layers) as captured:
            out = model(x.detach().requires_grad_(False))
        if target >= out.shape[1]:
            raise UsageError(f"target {target} is not an output node (0..{out.shape[1] - 1})")
        y = out.softmax(1)[0, target] if output == "prob" else out[0, target]
        grads = torch.autograd.grad(y, [captured[n] for n in layers], allow_unused=True)
    best: Feature | None = None
    for name, g in zip(layers, grads, strict=True):
        a = captured[name].detach()[0]
        gg = torch.zeros_like(a) if g is None else g.detach()[0]
        prod = a * gg if score == "activation-x-pg" else gg
        flat = int(prod.flatten().argmax())
        value = float(prod.flatten()[flat])
        if best is not None and value <= best.score:
            continue
        if prod.ndim == 3:
            _, map_h, map_w = prod.shape
            unit, rem = divmod(flat, map_h * map_w)
            py, px = divmod(rem, map_w)
            in_h, in_w = x.shape[-2:]
            sy, sx = in_h / map_h, in_w / map_w
            region = (int(px * sx), int(py * sy), int(np.ceil((px + 1) * sx)), int(np.ceil((py + 1) * sy)))
            best = Feature(name, unit, (py, px), region, value, a[unit].cpu().numpy(), gg[unit].cpu().numpy())
        else:
            best = Feature(name, flat, None, None, value, a.cpu().numpy()[flat : flat + 1], gg.cpu().numpy()[flat : flat + 1])
    if best is None:
        raise UsageError("no layer to search")
    return best


def perturb_toward(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    *,
    steps: int = 20,
    step_size: float = 0.02,
    low: float = 0.0,
    high: float = 1.0,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Move the raw input (values in [low, high]) along dy_target/dx, step by step.

    Each step adds ``step_size * g / max|g|`` (so no pixel moves more than ``step_size``) and
    clips to [low, high]. ``prepare`` maps raw inputs to the model's (e.g. normalisation);
    the gradient is taken through it.

    Returns
    -------
    dict with ``images`` (steps+1, C, H, W), ``target_prob`` and ``original_prob`` per step
    (original = the class predicted for the unperturbed input), ``predicted`` per step,
    ``flip_step`` (first step predicted as target, or None).
    """
    if step_size <= 0:
        raise UsageError(f"step size must be > 0, got {step_size}")
    if steps < 1:
        raise UsageError(f"steps must be >= 1, got {steps}")
    prep = prepare or (lambda t: t)
    model.eval()
    cur = x.detach().clone()
    images = [cur.clone()]
    with torch.no_grad():
        probs0 = model(prep(cur)).softmax(1)[0]
    if not 0 <= target < probs0.shape[0]:
        raise UsageError(f"target {target} is not an output node (0..{probs0.shape[0] - 1})")
    original = int(probs0.argmax())
    target_p, orig_p, preds = [float(probs0[target])], [float(probs0[original])], [original]
    for _ in range(steps):
        cur.requires_grad_(True)
        with torch.enable_grad():
            logit = model(prep(cur))[0, target]
            (g,) = torch.autograd.grad(logit, cur)
        scale = g.abs().max()
        step = g / scale if float(scale) > 0 else torch.zeros_like(g)
        cur = (cur.detach() + step_size * step).clamp_(low, high)
        images.append(cur.clone())
        with torch.no_grad():
            p = model(prep(cur)).softmax(1)[0]
        target_p.append(float(p[target]))
        orig_p.append(float(p[original]))
        preds.append(int(p.argmax()))
    flip = next((i for i, pr in enumerate(preds) if pr == target), None)
    return {"images": torch.cat(images), "target_prob": target_p, "original_prob": orig_p, "predicted": preds,
            "original": original, "flip_step": flip}


def single_step_sweep(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    target: int | torch.Tensor,
    step_sizes: Sequence[float],
    *,
    output: str = "prob",
    low: float = 0.0,
    high: float = 1.0,
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """One step along the prediction gradient of the raw input, for each step size.

    x' = clip(x + eps * d y_target / d x, low, high), with y the target class's probability
    (``output="prob"``, the thesis' y) or its logit; the gradient is taken through ``prepare``
    (e.g. the normalisation) and is not rescaled (eps multiplies it as it is).

    Returns
    -------
    dict with ``step_sizes``, ``predicted`` (len(eps), N) class indices, ``success`` per eps (the
    share predicted as the target), ``induced_error`` per eps (the share no longer predicted as
    ``labels``) and ``grad_max`` (the largest |d y / d x| per input, to read eps against).

    References
    ----------
    Lo, H. Z. (2016), "Querying Deep Neural Networks with Gradients", M.S. thesis, University of
    Massachusetts Boston (perturbation by a single
    gradient step of varying size: success, Fig. 4.6, and induced error, Fig. 4.7).
    """
    if not step_sizes or any(e <= 0 for e in step_sizes):
        raise UsageError(f"step sizes must be > 0, got {list(step_sizes)}")
    if output not in ("prob", "logit"):
        raise UsageError(f"output must be prob or logit, got {output!r}")
    prep = prepare or (lambda t: t)
    model.eval()
    cur = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = model(prep(cur))
        if output == "prob":
            out = out.softmax(1)
        t = torch.full((len(x),), target, dtype=torch.long) if isinstance(target, int) else target.long()
        if int(t.min()) < 0 or int(t.max()) >= out.shape[1]:
            raise UsageError(f"target is not an output node (0..{out.shape[1] - 1})")
        (g,) = torch.autograd.grad(out.gather(1, t.view(-1, 1).to(out.device)).sum(), cur)
    preds = []
    with torch.no_grad():
        for eps in step_sizes:
            preds.append(model(prep((x + eps * g).clamp(low, high))).argmax(1).cpu())
    p = torch.stack(preds)
    t, lab = t.cpu(), labels.cpu()
    return {"step_sizes": list(step_sizes), "predicted": p.tolist(),
            "success": (p == t).to(torch.float64).mean(1).tolist(),
            "induced_error": (p != lab).to(torch.float64).mean(1).tolist(),
            "grad_max": g.flatten(1).abs().max(1).values.cpu().tolist()}


def removal_curve(model: nn.Module, inputs: torch.Tensor, target: int, layer: str, order: Sequence[int], n_units: int,
                  *, seeds: Sequence[int] = (0, 1, 2, 3, 4)) -> dict[str, Any]:
    """Holding rate of ``target`` on ``inputs`` as the units of ``layer`` are closed one by one
    in ``order`` (all open at k = 0), against random orders (mean, std per k)."""
    if sorted(order) != sorted(set(order)) or any(not 0 <= u < n_units for u in order):
        raise UsageError("order must list distinct units of the layer")

    def curve(seq: Sequence[int]) -> list[float]:
        mask = torch.ones(n_units, dtype=inputs.dtype, device=inputs.device)
        out = [holding_rate(model, inputs, target, {layer: mask})]
        for u in seq:
            mask[u] = 0
            out.append(holding_rate(model, inputs, target, {layer: mask}))
        return out

    ordered = curve(order)
    rand = np.array([curve(list(np.random.default_rng(s).permutation(n_units)[: len(order)])) for s in seeds])
    return {"k": list(range(len(order) + 1)), "ordered": ordered, "random_mean": rand.mean(0).tolist(),
            "random_std": rand.std(0).tolist()}
