"""Core units by Switch Gates (Yan & Feng, "Interpreting Deep Classification Models With
Bayesian Inference", ICLR 2018 conference submission, OpenReview H1vCXOe0b).

After each layer of interest a Switch Gate layer multiplies unit i (a dense neuron, a whole
conv filter, or an input element) by b_i = sigmoid(w * g_i), with g_i trainable and w a large
positive constant. Only the gates (and the classifier weight w_b below) train; the model is
frozen. For a class c the set D'_c holds inputs the model predicts as c (y' = 1) and an equal
number of randomly drawn inputs it predicts as other classes (y' = 0). The loss is

    mean over a mini-batch (y' - y_b)^2  +  alpha * sum_i b_i  +  lambda * sum_i phi(b_i),
    phi(b) = sigmoid(-10 (b - 0.5)^2)

where phi penalises undecided gates and alpha pays for every open one.

The center-based binary classifier (section 3 of the paper):

    y_b = 2 / (1 + exp(v)),   v = w_b (y_max - r_n) / sqrt(var y)

*Reading* (the equation survives in the text but its symbols are not all defined): y is the
gated model's output vector for sample n, y_max its largest entry, r_n its entry for class c,
and var y the variance of the *ungated* model's output entries over D'_c (one constant per
fit; a per-sample variance would make v blind to the gates' overall scale, and alpha then
closes every gate: tried, measured on the unit-test toy); w_b > 0 is one trained scalar
(stored as log w_b, starting at 1). Then v >= 0 and y_b is in (0, 1]: y_b = 1 exactly when class c holds the
largest score, i.e. the classifier is *satisfied* (y_b = 1) if and only if the gated model
predicts c, and y_b falls towards 0 as c drops below the winner. The "center" is read as the
class-c score being the reference the winner is measured from.

*Reading* of y: the paper's "output of the model" is taken as the softmax *probability*
vector (``scores="probs"``, the default); ``scores="logits"`` is this package's earlier variant,
kept under that label. The same choice feeds sqrt(var y).

Results: the units kept (b >= 0.5) and the *prediction holding rate* over D'_c (the share of
samples whose gated verdict p' equals the ungated one, y') under two rules, both reported:

- the paper's rule (fields ending ``_yb``): p'_n = 1 iff y_b >= 0.5 for the gated model, with
  the learned w_b and the same sd. Since y_b >= 0.5 iff v <= ln 3, this says "c" whenever the
  gap to the winner is at most sd ln 3 / w_b: it says "c" for every sample the arg-max rule
  does, and also for near misses; the two rules agree as w_b grows.
- the arg-max rule (``holding_rate``, this package's earlier figure): p'_n = 1 iff the gated
  model's arg-max is c.

Beside them, labelled, the share of the positives still predicted as c (arg-max; it scores 1.0
for a layer whose closed gates make the model predict c for everything, where the holding rate
is about 0.5); every rate also for random subsets of the same size, judged by the same rule.
Gates on the input train on the positives only, as the paper does.

alpha can be tuned per class to a holding target (:meth:`SwitchGates.tune_alpha`): the paper
keeps the holding rate "nearly 99.5%" rather than fixing alpha.

A measured asymmetry (docs/REPRODUCTION.md): while a positive keeps c as its arg-max, y_b = 1
exactly and its fit term has zero gradient (the gap max - r_n is 0 with slope 0), so with the
gates open only the negatives push the gates, towards closing units; the units that support
class c are among those they close, and only alpha's size decides how far that goes.
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
from deepatlas.models.sites import hooks, split_site

__all__ = [
    "INPUT",
    "SCORES",
    "SwitchGateResult",
    "SwitchGates",
    "balanced_holding_rate",
    "center_classifier",
    "holding_rate",
    "phi",
    "yb_holding_rate",
]

#: The layer name that gates the model's input (one gate per input element, e.g. per pixel).
INPUT = "input"
#: What y (the classifier's score vector) is: softmax probabilities (the paper's, default) or logits.
SCORES = ("probs", "logits")
#: The two holding rules: the paper's y_b >= 0.5 and the arg-max rule.
RULES = ("yb", "argmax")
#: y_b >= 0.5 exactly when v <= ln 3.
LN3 = float(np.log(3.0))


def phi(b: torch.Tensor) -> torch.Tensor:
    """The binarising penalty sigmoid(-10 (b - 0.5)^2): largest at b = 0.5."""
    return torch.sigmoid(-10.0 * (b - 0.5) ** 2)


def center_classifier(scores: torch.Tensor, target: int, w_b: torch.Tensor | float, sd: torch.Tensor | float) -> torch.Tensor:
    """The paper's center-based binary classifier y_b = 2 / (1 + exp(v)) per sample.

    v = w_b (y_max - r_n) / sqrt(var y), with y a sample's output vector (``scores`` row),
    y_max its largest entry, r_n its entry for ``target``; ``sd`` = sqrt(var y), the standard
    deviation of the ungated outputs over D'_c (see the module docstring for this reading).
    y_b = 1 exactly when ``target`` has the largest score (ties aside).

    References
    ----------
    Yan, H. & Feng, J. (2018), "Interpreting Deep Classification Models With Bayesian Inference",
    ICLR 2018 conference submission, OpenReview H1vCXOe0b, section 3.
    """
    gap = scores.max(1).values - scores[:, target]
    v = w_b * gap / sd
    return 2.0 * torch.sigmoid(-v)  # = 2 / (1 + exp(v)), without overflow for large v


@dataclass
class SwitchGateResult:
    """Per layer: final gate values and the kept units; the holding rates; the loss history.

    Rates over D'_c (verdict "c or not" kept), by rule:

    - ``holding_rate`` / ``random_holding_rates``: the arg-max rule (p' = 1 iff the gated
      model's arg-max is c).
    - ``holding_rate_yb`` / ``random_holding_rates_yb``: the paper's rule (p' = 1 iff y_b >= 0.5,
      with the learned ``w_b`` and the fit's ``sd``); ``open_holding_rate_yb`` the same rule
      with every gate open (the ungated model: below 1 where a negative's gap to c is small).

    ``positive_holding_rate`` is the share of positives still predicted as c (arg-max).
    ``params["alpha_search"]`` lists the alphas tried when alpha was tuned.
    """

    gates: dict[str, torch.Tensor]
    kept: dict[str, list[int]]
    holding_rate: float
    random_holding_rates: list[float]
    positive_holding_rate: float = float("nan")
    random_positive_holding_rates: list[float] = field(default_factory=list)
    loss_history: list[float] = field(default_factory=list)
    fit_history: list[float] = field(default_factory=list)
    w_b: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    holding_rate_yb: float = float("nan")
    random_holding_rates_yb: list[float] = field(default_factory=list)
    open_holding_rate_yb: float = float("nan")
    sd: float = float("nan")

    @property
    def n_kept(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.kept.items()}


@contextmanager
def _gated(model: nn.Module, gates: dict[str, torch.Tensor]) -> Iterator[None]:
    """Multiply each named site's output (or the input) by its gate vector."""

    def scale(t: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if b.shape == t.shape[1:]:  # one gate per element (input gating)
            return t * b
        shape = (1, -1) + (1,) * (t.ndim - 2)  # one gate per unit / channel
        return t * b.view(shape)

    pre = {"": lambda _m, args, b=gates[INPUT]: (scale(args[0], b), *args[1:])} if INPUT in gates else {}
    forward = {name: (lambda _m, _i, out, b=b: scale(out, b)) for name, b in gates.items() if name != INPUT}
    with hooks(model, forward=forward, pre=pre):
        yield


def _as_scores(out: torch.Tensor, scores: str) -> torch.Tensor:
    """The classifier's y: softmax probabilities or the raw logits."""
    return out.softmax(1) if scores == "probs" else out


@torch.no_grad()
def _score_matrix(model: nn.Module, inputs: torch.Tensor, scores: str,
                  masks: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    def run() -> torch.Tensor:
        return torch.cat([_as_scores(model(inputs[s : s + 1000]), scores) for s in range(0, len(inputs), 1000)])

    if masks is None:
        return run()
    with _gated(model, {k: v.to(inputs.dtype) for k, v in masks.items()}):
        return run()


def _predict(model: nn.Module, inputs: torch.Tensor, masks: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    return _score_matrix(model, inputs, "logits", masks).argmax(1)


def _rates(gated: torch.Tensor, before: torch.Tensor, n_positives: int, target: int, w_b: float,
           sd: float) -> tuple[float, float, float]:
    """From one gated forward pass over D'_c (``gated`` scores; ``before``: the ungated verdicts
    "is ``target``"): the arg-max rule's holding rate, the positives still predicted as
    ``target``, and the y_b rule's holding rate (as :func:`balanced_holding_rate`,
    :func:`holding_rate` and :func:`yb_holding_rate` compute them one by one)."""
    after = gated.argmax(1) == target
    y = torch.arange(len(gated), device=gated.device) < n_positives
    yb = center_classifier(gated, target, w_b, sd) >= 0.5

    def share(t: torch.Tensor) -> float:
        return float(t.to(torch.float64).mean()) if len(t) else 0.0

    return share(before == after), share(after[:n_positives]), share(yb == y)


@torch.no_grad()
def yb_holding_rate(model: nn.Module, inputs: torch.Tensor, n_positives: int, target: int,
                    masks: dict[str, torch.Tensor] | None, w_b: float, sd: float, scores: str = "probs") -> float:
    """The paper's holding rule: over ``inputs`` (D'_c, the first ``n_positives`` predicted as
    ``target``, y' = 1, the rest not, y' = 0) the share whose p' = [y_b >= 0.5] equals y',
    y_b the center classifier on the gated model's scores (``masks``; None: ungated).

    References
    ----------
    Yan, H. & Feng, J. (2018), "Interpreting Deep Classification Models With Bayesian Inference",
    ICLR 2018 conference submission, OpenReview H1vCXOe0b, sections 3-4.
    """
    if len(inputs) == 0:
        return 0.0
    yb = center_classifier(_score_matrix(model, inputs, scores, masks), target, w_b, sd)
    y = torch.arange(len(inputs), device=yb.device) < n_positives
    return float(((yb >= 0.5) == y).to(torch.float64).mean())


@torch.no_grad()
def holding_rate(model: nn.Module, inputs: torch.Tensor, target: int, masks: dict[str, torch.Tensor]) -> float:
    """Fraction of ``inputs`` predicted as ``target`` when only the masked-in units are open
    (the positives-only rate when ``inputs`` are the positives)."""
    if len(inputs) == 0:
        return 0.0
    return float((_predict(model, inputs, masks) == target).to(torch.float64).mean())


@torch.no_grad()
def balanced_holding_rate(model: nn.Module, inputs: torch.Tensor, target: int, masks: dict[str, torch.Tensor]) -> float:
    """The paper's prediction holding rate: the share of ``inputs`` (D'_c) whose gated verdict
    p' = "predicted as ``target`` or not" equals the ungated one.

    References
    ----------
    Yan, H. & Feng, J. (2018), "Interpreting Deep Classification Models With Bayesian Inference",
    ICLR 2018 conference submission, OpenReview H1vCXOe0b, section 4.
    """
    if len(inputs) == 0:
        return 0.0
    before = _predict(model, inputs) == target
    after = _predict(model, inputs, masks) == target
    return float((before == after).to(torch.float64).mean())


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
    >>> import torch
    >>> from deepatlas.models import FashionCNN
    >>> _ = torch.manual_seed(0)
    >>> model = FashionCNN(1, 10, (4, 8, 8), 16, 28).eval()
    >>> x = torch.rand(6, 1, 28, 28)
    >>> res = SwitchGates(model, ["pool3"]).fit(x[:3], x[3:], 5, steps=20)
    >>> sorted(res.kept), 0.0 <= res.holding_rate <= 1.0, 0.0 <= res.holding_rate_yb <= 1.0
    (['pool3'], True, True)

    References
    ----------
    Yan, H. & Feng, J. (2018), "Interpreting Deep Classification Models With Bayesian Inference",
    ICLR 2018 conference submission, OpenReview H1vCXOe0b.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], *, w: float = 10.0) -> None:
        if not layers:
            raise UsageError("give at least one layer for the switch gates")
        if w <= 0:
            raise UsageError("w must be positive")
        names = dict(model.named_modules())
        for layer in layers:  # a site: a module, or module#k for the k-th call of a shared one
            if layer != INPUT and (not layer or split_site(layer)[0] not in names):
                raise UsageError(f"unknown layer {layer!r}; modules: {', '.join(n for n in names if n)}")
        self.model = model
        self.layers = list(layers)
        self.w = w

    def _shapes(self, example: torch.Tensor) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        record = {n: (lambda _m, _i, o, n=n: shapes.__setitem__(n, (o.shape[1],))) for n in self.layers if n != INPUT}
        with hooks(self.model, forward=record), torch.no_grad():
            self.model(example)
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
        batch_size: int = 64,
        seed: int = 0,
        random_seeds: Sequence[int] = (0, 1, 2, 3, 4),
        scores: str = "probs",
        train_wb: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> SwitchGateResult:
        """Train the gates on D'_c (positives predicted as ``target``, negatives not).

        Parameters
        ----------
        alpha : float, default 0.02
            Price of each open gate. *Choice*: the squared error is averaged over the
            mini-batch (the paper sums it), so alpha does not have to grow with the batch size;
            the alpha and lambda terms are sums over gates, as in the paper. The paper tunes
            alpha to a holding rate rather than fixing it: see :meth:`tune_alpha`.
        lam : float, default 1.0
            Weight of sum phi(b_i), the push towards 0/1.
        steps, lr : Adam steps (one mini-batch each) and learning rate on g and log w_b.
        init : float, default 0.0
            Initial g: b = 0.5, undecided, where phi has no slope. *Choice*: lambda is ramped
            linearly from 0 over the first half of the steps, so the gates first move by fit
            and alpha and only then are pushed to 0 or 1 (with phi at full weight from the
            start, gates froze on whichever side they first crossed).
        batch_size : int, default 64
            Mini-batch size; batches are drawn from a permutation of D'_c seeded by ``seed``,
            renewed every epoch, so different seeds give different runs (the paper's
            stability study).
        seed : int, default 0
        random_seeds : seeds of the random same-size subsets (empty: none drawn).
        scores : {"probs", "logits"}, default "probs"
            What y is in the classifier and in sqrt(var y). *Reading*: the paper's "output"
            of a classification model is its softmax probability vector; "logits" is this
            package's earlier variant.
        train_wb : bool, default True
            Train w_b (the paper's). False holds w_b at 1 (the fixed-w_b variant): with y' = 1
            throughout (input gating) a trained w_b falls towards 0, which makes y_b = 1
            whatever the gates do.

        Gating ``"input"`` trains on the positives only (the paper's informative-pixel map);
        the negatives still enter the holding rates.
        """
        if len(positives) == 0 or len(negatives) == 0:
            raise UsageError("the balanced set needs inputs of the class and of other classes")
        if batch_size < 1:
            raise UsageError("batch size must be >= 1")
        if scores not in SCORES:
            raise UsageError(f"scores must be one of {', '.join(SCORES)}, not {scores!r}")
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        try:
            return self._fit(positives, negatives, target, alpha, lam, steps, lr, init, batch_size, seed, random_seeds,
                             scores, train_wb, progress)
        finally:
            for p in self.model.parameters():
                p.requires_grad_(True)

    def tune_alpha(
        self,
        positives: torch.Tensor,
        negatives: torch.Tensor,
        target: int,
        *,
        holding_target: float = 0.995,
        alpha_range: tuple[float, float] = (1e-4, 0.05),
        max_fits: int = 5,
        rule: str = "yb",
        random_seeds: Sequence[int] = (0, 1, 2, 3, 4),
        progress: Callable[[int], None] | None = None,
        **fit_kwargs: Any,
    ) -> SwitchGateResult:
        """Fit with the largest alpha whose holding rate over D'_c reaches ``holding_target``.

        The paper keeps the prediction holding rate "nearly 99.5%" and reports how few units
        that leaves; a fixed alpha instead keeps very different rates per class.

        Parameters
        ----------
        holding_target : float, default 0.995
            The paper's "nearly 99.5%".
        alpha_range : (float, float), default (1e-4, 0.05)
            *Choice*: the first fit uses the smallest alpha (which keeps most units; if even it
            misses the target, the search stops there and says so); the remaining fits bisect
            log alpha between the largest alpha that met the target and the smallest that
            missed (the upper end, assumed to miss: 0.05 x 32 gates outweighs the whole fit
            term). The upper end is 2.5x the old fixed 0.02.
        max_fits : int, default 5
            *Choice*: 5 fits (1 + 4 bisections) place alpha within a factor 500^(1/16) = 1.5
            of the boundary, at five times one fit's cost: the CLI stays usable.
        rule : {"yb", "argmax"}, default "yb"
            Which holding rate must reach the target: the paper's y_b >= 0.5 or the arg-max rule.
        random_seeds : seeds of the random same-size subsets, drawn for the chosen fit only.
        **fit_kwargs : passed to :meth:`fit` (``scores``, ``train_wb``, ``steps`` ...).

        Returns
        -------
        SwitchGateResult
            The chosen fit; ``params`` adds ``alpha_search`` (each alpha tried with its
            holding rates by both rules and the units kept), ``holding_target``, ``alpha_rule``
            and ``target_reached``.

        References
        ----------
        Yan, H. & Feng, J. (2018), "Interpreting Deep Classification Models With Bayesian
        Inference", ICLR 2018 conference submission, OpenReview H1vCXOe0b, section 4.
        """
        if rule not in RULES:
            raise UsageError(f"rule must be one of {', '.join(RULES)}, not {rule!r}")
        lo, hi = alpha_range
        if not 0 < lo < hi:
            raise UsageError("alpha range must be 0 < low < high")
        if max_fits < 1:
            raise UsageError("max fits must be >= 1")
        if not 0.0 < holding_target <= 1.0:
            raise UsageError("the holding target must be in (0, 1]")
        tried: list[dict[str, Any]] = []
        best: SwitchGateResult | None = None
        fallback: SwitchGateResult | None = None

        def attempt(alpha: float) -> bool:
            nonlocal best, fallback
            res = self.fit(positives, negatives, target, alpha=alpha, random_seeds=(), progress=progress, **fit_kwargs)
            rate = res.holding_rate_yb if rule == "yb" else res.holding_rate
            met = rate >= holding_target
            tried.append({"alpha": alpha, "holding_rate_yb": res.holding_rate_yb, "holding_rate_argmax": res.holding_rate,
                          "n_kept": sum(res.n_kept.values()), "met": met})
            if met and (best is None or alpha > best.params["alpha"]):
                best = res
            if fallback is None:
                fallback = res
            return met

        good, bad = lo, hi
        if attempt(lo):
            for _ in range(max_fits - 1):
                mid = float(np.sqrt(good * bad))
                if attempt(mid):
                    good = mid
                else:
                    bad = mid
        chosen = best if best is not None else fallback
        assert chosen is not None
        self.random_baseline(chosen, positives, negatives, target, random_seeds)
        chosen.params.update({"alpha_search": tried, "holding_target": holding_target,
                              "alpha_rule": "y_b >= 0.5" if rule == "yb" else "arg-max",
                              "target_reached": best is not None, "alpha_range": [lo, hi], "max_fits": max_fits})
        return chosen

    @torch.no_grad()
    def random_baseline(self, res: SwitchGateResult, positives: torch.Tensor, negatives: torch.Tensor, target: int,
                        random_seeds: Sequence[int]) -> SwitchGateResult:
        """Fill ``res``'s random same-size subset rates (each rule, one subset per seed)."""
        everything = torch.cat([positives, negatives])
        scores = res.params.get("scores", "probs")
        return self._random_rates(res, everything, len(positives), target, _score_matrix(self.model, everything, scores),
                                  random_seeds)

    @torch.no_grad()
    def _random_rates(self, res: SwitchGateResult, everything: torch.Tensor, n_positives: int, target: int,
                      ungated: torch.Tensor, random_seeds: Sequence[int]) -> SwitchGateResult:
        scores = res.params.get("scores", "probs")
        before = ungated.argmax(1) == target
        rand, rand_pos, rand_yb = [], [], []
        masks = {n: (b >= 0.5).to(everything.dtype) for n, b in res.gates.items()}
        for rseed in random_seeds:
            rng = np.random.default_rng(rseed)
            rmask = {}
            for n, m in masks.items():
                flat = torch.zeros(m.numel(), dtype=everything.dtype, device=everything.device)
                flat[torch.as_tensor(rng.choice(m.numel(), size=int(m.sum()), replace=False), device=everything.device)] = 1
                rmask[n] = flat.view(m.shape)
            rates = _rates(_score_matrix(self.model, everything, scores, rmask), before, n_positives, target, res.w_b, res.sd)
            rand.append(rates[0])
            rand_pos.append(rates[1])
            rand_yb.append(rates[2])
        res.random_holding_rates, res.random_positive_holding_rates, res.random_holding_rates_yb = rand, rand_pos, rand_yb
        return res

    def _fit(self, positives: torch.Tensor, negatives: torch.Tensor, target: int, alpha: float, lam: float, steps: int,
             lr: float, init: float, batch_size: int, seed: int, random_seeds: Sequence[int], scores: str, train_wb: bool,
             progress: Callable[[int], None] | None) -> SwitchGateResult:
        everything = torch.cat([positives, negatives])
        train = positives if INPUT in self.layers else everything
        y = torch.cat([torch.ones(len(positives)), torch.zeros(len(train) - len(positives))]).to(train.device, train.dtype)
        shapes = self._shapes(train[:1])
        ungated = _score_matrix(self.model, everything, scores)
        sd = ungated.var().clamp_min(1e-12).sqrt()
        params = {n: torch.full(s, init, dtype=train.dtype, device=train.device, requires_grad=True) for n, s in shapes.items()}
        log_wb = torch.zeros((), dtype=train.dtype, device=train.device, requires_grad=train_wb)
        opt = torch.optim.Adam([*params.values(), *([log_wb] if train_wb else [])], lr=lr)
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(train), generator=gen)
        cursor = 0
        history: list[float] = []
        fits: list[float] = []
        for step in range(steps):
            if cursor >= len(order):
                order, cursor = torch.randperm(len(train), generator=gen), 0
            idx = order[cursor : cursor + batch_size].to(train.device)
            cursor += batch_size
            ramp = min(1.0, step / max(1, steps // 2))  # lambda grows from 0: settle first, binarise later
            gates = {n: torch.sigmoid(self.w * g) for n, g in params.items()}
            with _gated(self.model, gates):
                s = _as_scores(self.model(train[idx]), scores)
            yb = center_classifier(s, target, log_wb.exp(), sd)
            fit = ((y[idx] - yb) ** 2).mean()
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
        masks = {n: (b >= 0.5).to(train.dtype) for n, b in final.items()}
        kept = {n: torch.nonzero(m.flatten()).flatten().tolist() for n, m in masks.items()}
        w_b, sd_f = float(log_wb.exp().detach()), float(sd)
        before = ungated.argmax(1) == target
        n_pos = len(positives)
        kept_rate, kept_pos, kept_yb = _rates(_score_matrix(self.model, everything, scores, masks), before, n_pos, target, w_b,
                                              sd_f)
        res = SwitchGateResult(
            final, kept, kept_rate, [], kept_pos, [], history, fits, w_b,
            {"alpha": alpha, "lambda": lam, "w": self.w, "steps": steps, "lr": lr, "batch_size": batch_size, "seed": seed,
             "layers": self.layers, "trained_on": "positives" if INPUT in self.layers else "balanced", "scores": scores,
             "train_wb": train_wb},
            holding_rate_yb=kept_yb, open_holding_rate_yb=_rates(ungated, before, n_pos, target, w_b, sd_f)[2], sd=sd_f)
        return self._random_rates(res, everything, n_pos, target, ungated, random_seeds)
