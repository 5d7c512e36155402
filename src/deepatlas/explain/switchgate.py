"""Core units by Switch Gates ("Interpreting Deep Classification Models With Bayesian
Inference", ICLR 2018 submission; DESIGN.md, method 4).

After each layer of interest a Switch Gate layer multiplies unit i (a dense neuron, a whole
conv filter, or an input pixel) by b_i = sigmoid(w * g_i), with g_i trainable and w a large
positive constant. Only the gates train; the model is frozen. For a class c, a balanced set
holds inputs the model predicts as c (y' = 1) and as other classes (y' = 0). The loss is

    mean over samples (y' - y_b)^2  +  alpha * sum_i b_i  +  lambda * sum_i phi(b_i),
    phi(b) = sigmoid(-10 (b - 0.5)^2)

where phi penalises undecided gates and alpha pays for every open one.

*Choice* (the paper's "center-based binary classifier" is given in words only): y_b compares
the gated model's score vector s_b(x) with the centres of the *ungated* scores of the two
groups, mu_1 (class c) and mu_0 (others):
    y_b = sigmoid((||s_b - mu_0||^2 - ||s_b - mu_1||^2) / T),  T = ||mu_1 - mu_0||^2 / 4
so y_b is near 1 when the gated scores sit nearer the class-c centre.

Results: the units kept (b >= 0.5), the *prediction holding rate* (the fraction of the class-c
inputs still predicted as c when only the kept units are open, all others set to 0), and the
holding rate of random subsets of the same size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from deepatlas.errors import UsageError

__all__ = ["INPUT", "SwitchGateResult", "SwitchGates", "holding_rate", "phi"]

#: The layer name that gates the model's input (one gate per input element, e.g. per pixel).
INPUT = "input"


def phi(b: torch.Tensor) -> torch.Tensor:
    """The binarising penalty sigmoid(-10 (b - 0.5)^2): largest at b = 0.5."""
    return torch.sigmoid(-10.0 * (b - 0.5) ** 2)


@dataclass
class SwitchGateResult:
    """Per layer: final gate values and the kept units; the holding rates; the loss history."""

    gates: dict[str, torch.Tensor]
    kept: dict[str, list[int]]
    holding_rate: float
    random_holding_rates: list[float]
    loss_history: list[float] = field(default_factory=list)
    fit_history: list[float] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_kept(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.kept.items()}


@contextmanager
def _gated(model: nn.Module, gates: dict[str, torch.Tensor]) -> Iterator[None]:
    """Multiply each named layer's output (or the input) by its gate vector."""
    handles = []

    def scale(t: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if b.shape == t.shape[1:]:  # one gate per element (input gating)
            return t * b
        shape = (1, -1) + (1,) * (t.ndim - 2)  # one gate per unit / channel
        return t * b.view(shape)

    for name, b in gates.items():
        if name == INPUT:
            handles.append(model.register_forward_pre_hook(lambda _m, args, b=b: (scale(args[0], b), *args[1:])))
        else:
            handles.append(model.get_submodule(name).register_forward_hook(lambda _m, _i, out, b=b: scale(out, b)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def holding_rate(model: nn.Module, inputs: torch.Tensor, target: int, masks: dict[str, torch.Tensor]) -> float:
    """Fraction of ``inputs`` predicted as ``target`` when only the masked-in units are open."""
    if len(inputs) == 0:
        return 0.0
    with _gated(model, {k: v.to(inputs.dtype) for k, v in masks.items()}):
        preds = model(inputs).argmax(1)
    return float((preds == target).to(torch.float64).mean())


class SwitchGates:
    """Find a class's core units in one or more layers (or the input) by training gates.

    Parameters
    ----------
    model : nn.Module
        Frozen during the search (its parameters are not touched).
    layers : sequence of str
        Qualified module names whose output units get gates; ``"input"`` gates the input elements.
    w : float, default 10.0
        Gate steepness: b = sigmoid(w * g).

    Examples
    --------
    >>> res = SwitchGates(model, ["pool3"]).fit(x_pos, x_neg, target=5)      # doctest: +SKIP
    >>> res.kept["pool3"], res.holding_rate                                   # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], *, w: float = 10.0) -> None:
        if not layers:
            raise UsageError("give at least one layer for the switch gates")
        if w <= 0:
            raise UsageError("w must be positive")
        names = dict(model.named_modules())
        for layer in layers:
            if layer != INPUT and (layer not in names or not layer):
                raise UsageError(f"unknown layer {layer!r}; modules: {', '.join(n for n in names if n)}")
        self.model = model
        self.layers = list(layers)
        self.w = w

    def _shapes(self, example: torch.Tensor) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        handles = [self.model.get_submodule(n).register_forward_hook(
            lambda _m, _i, o, n=n: shapes.__setitem__(n, (o.shape[1],))) for n in self.layers if n != INPUT]
        try:
            with torch.no_grad():
                self.model(example)
        finally:
            for h in handles:
                h.remove()
        if INPUT in self.layers:
            shapes[INPUT] = tuple(example.shape[1:])
        return shapes

    def fit(
        self,
        positives: torch.Tensor,
        negatives: torch.Tensor,
        target: int,
        *,
        alpha: float = 0.02,
        lam: float = 1.0,
        steps: int = 400,
        lr: float = 0.1,
        init: float = 0.0,
        random_seeds: Sequence[int] = (0, 1, 2, 3, 4),
        progress: Callable[[int], None] | None = None,
    ) -> SwitchGateResult:
        """Train the gates on a balanced set (positives predicted as ``target``, negatives not).

        Parameters
        ----------
        alpha : float, default 0.02
            Price of each open gate. *Choice*: the squared error is averaged over samples (the
            paper sums it), so alpha does not have to grow with the set's size; the alpha and
            lambda terms are sums over gates, as in the paper.
        lam : float, default 1.0
            Weight of sum phi(b_i), the push towards 0/1.
        steps, lr : Adam steps and learning rate on the gate parameters g.
        init : float, default 0.0
            Initial g: b = 0.5, undecided, where phi has no slope. *Choice*: lambda is ramped
            linearly from 0 over the first half of the steps, so the gates first move by fit
            and alpha and only then are pushed to 0 or 1 (with phi at full weight from the
            start, gates froze on whichever side they first crossed).
        """
        if len(positives) == 0 or len(negatives) == 0:
            raise UsageError("the balanced set needs inputs of the class and of other classes")
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        try:
            return self._fit(positives, negatives, target, alpha, lam, steps, lr, init, random_seeds, progress)
        finally:
            for p in self.model.parameters():
                p.requires_grad_(True)

    def _fit(self, positives: torch.Tensor, negatives: torch.Tensor, target: int, alpha: float, lam: float, steps: int,
             lr: float, init: float, random_seeds: Sequence[int], progress: Callable[[int], None] | None) -> SwitchGateResult:
        x = torch.cat([positives, negatives])
        y = torch.cat([torch.ones(len(positives)), torch.zeros(len(negatives))]).to(x.device, x.dtype)
        with torch.no_grad():
            scores = self.model(x)
        mu1, mu0 = scores[: len(positives)].mean(0), scores[len(positives):].mean(0)
        temp = ((mu1 - mu0) ** 2).sum().clamp_min(1e-8) / 4
        shapes = self._shapes(x[:1])
        params = {n: torch.full(s, init, dtype=x.dtype, device=x.device, requires_grad=True) for n, s in shapes.items()}
        opt = torch.optim.Adam(list(params.values()), lr=lr)
        history: list[float] = []
        fits: list[float] = []
        for step in range(steps):
            ramp = min(1.0, step / max(1, steps // 2))  # lambda grows from 0: settle first, binarise later
            gates = {n: torch.sigmoid(self.w * g) for n, g in params.items()}
            with _gated(self.model, gates):
                s = self.model(x)
            yb = torch.sigmoid((((s - mu0) ** 2).sum(1) - ((s - mu1) ** 2).sum(1)) / temp)
            fit = ((y - yb) ** 2).mean()
            reg = sum(b.sum() for b in gates.values())
            binar = sum(phi(b).sum() for b in gates.values())
            loss = fit + alpha * reg + ramp * lam * binar
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append(float(loss.detach()))
            fits.append(float(fit.detach()))
            if progress is not None:
                progress(1)
        final = {n: torch.sigmoid(self.w * g).detach() for n, g in params.items()}
        masks = {n: (b >= 0.5).to(x.dtype) for n, b in final.items()}
        kept = {n: torch.nonzero(m.flatten()).flatten().tolist() for n, m in masks.items()}
        rate = holding_rate(self.model, positives, target, masks)
        rand = []
        for seed in random_seeds:
            rng = np.random.default_rng(seed)
            rmask = {}
            for n, m in masks.items():
                flat = torch.zeros(m.numel(), dtype=x.dtype, device=x.device)
                flat[torch.as_tensor(rng.choice(m.numel(), size=int(m.sum()), replace=False), device=x.device)] = 1
                rmask[n] = flat.view(m.shape)
            rand.append(holding_rate(self.model, positives, target, rmask))
        return SwitchGateResult(final, kept, rate, rand, history, fits,
                                {"alpha": alpha, "lambda": lam, "w": self.w, "steps": steps, "lr": lr, "layers": self.layers})
