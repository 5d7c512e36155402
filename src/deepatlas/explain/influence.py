"""Influential scores (Jung, Shin & Kwon): how much each element drives an output node.

Between consecutive node layers with values L (lower) and weights w,

    J[l, l+1]_ij = w_ij * L_i / sum_i |w_ij * L_i|        (0 where the sum is 0; no biases)

and J[l, m] = J[l, l+1] @ ... @ J[m-1, m]. The score of element i on output node t is
J[input, output]_{i, t}. Nothing here builds J: one backward-style sweep per target carries
v_{l+1} down with v_l = L * W^T (v_{l+1} / D), D = |W| |L|, which is J[l, l+1] @ v_{l+1}.

How each module enters the sweep (choices where the paper is silent are marked *):
  Linear, Conv1d/2d/3d   the rule above (the same sum over each output position's receptive field)
  ReLU and other activation modules   * pass-through: the paper's nodes are post-activation
                         values and J ignores the activation function, so influence reaches
                         inputs that a dead ReLU hides from the gradient
  MaxPool                routes through the arg-max (autograd's own routing)
  AvgPool / AdaptiveAvgPool   a linear map with weights 1/k (autograd's own)
  Flatten, Dropout (eval), Identity, reshapes   pass-through
  Add (a residual sum, :class:`deepatlas.models.layers.Add`)   a linear map with weight 1 per
                         input (the paper's rule with w = 1): v_a = a v / (|a| + |b|) and
                         v_b = b v / (|a| + |b|), elementwise; 0 where |a| + |b| = 0. A plain
                         ``+`` in ``forward`` would instead hand each branch the whole of v.
  BatchNorm (eval)       * folded into the preceding weighted layer: scaling a node's incoming
                         weights by s cancels in the normalisation except for sign(s), so the
                         sweep multiplies by sign(gamma / sqrt(var + eps))
Other modules with parameters (LayerNorm, attention, ...) raise an error that names them.
Activations applied functionally (``F.relu`` in ``forward``) cannot be seen and would act as
gradients; use modules.

References
----------
Jung, Shin & Kwon, "Explaining neural networks with influential scores" (DESIGN.md, method 2).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from deepatlas.errors import UsageError
from deepatlas.explain._hooks import capture_outputs
from deepatlas.models.layers import ACTIVATIONS, Add

__all__ = ["InfluentialScores"]

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_PASS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
         nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Unflatten, nn.Dropout,
         nn.Dropout2d, nn.Identity)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _bias_free(module: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    if isinstance(module, nn.Linear):
        return F.linear(x, weight)
    m: Any = module
    conv = F.conv1d if isinstance(m, nn.Conv1d) else F.conv2d if isinstance(m, nn.Conv2d) else F.conv3d
    if m.padding_mode != "zeros":
        raise UsageError(f"influential scores support zero-padded convolutions only ({module})")
    return conv(x, weight, None, m.stride, m.padding, m.dilation, m.groups)


def _divide_or_zero(g: torch.Tensor, denom: torch.Tensor) -> torch.Tensor:
    """g / denom where denom > 0, else 0: the rule's normaliser, 0 for a node with no input mass."""
    return torch.where(denom > 0, g / denom.clamp_min(torch.finfo(g.dtype).tiny), torch.zeros_like(g))


class _WeightedRule(torch.autograd.Function):
    """Forward: the layer as it is. Backward: v_in = x * W^T (v_out / (|W| |x|))."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, out: torch.Tensor, module: nn.Module) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.module = module
        return out.view_as(out)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (x,) = ctx.saved_tensors
        module = ctx.module
        w = module.weight.detach()
        with torch.enable_grad():
            denom = _bias_free(module, x.abs(), w.abs())
            u = _divide_or_zero(g, denom)
            xr = x.detach().requires_grad_(True)
            (back,) = torch.autograd.grad(_bias_free(module, xr, w), xr, grad_outputs=u)
        return x * back, None, None


class _AddRule(torch.autograd.Function):
    """Forward: a + b as computed. Backward: each summand's share of v, by its signed value."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        return out.view_as(out)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        a, b = ctx.saved_tensors
        u = _divide_or_zero(g, a.abs() + b.abs())
        return a * u, b * u, None


class _PassThrough(torch.autograd.Function):
    """Forward: the activation's output. Backward: identity (scaled by ``scale`` if given)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, out: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        ctx.scale = scale
        return out.view_as(out)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return (g if ctx.scale is None else g * ctx.scale), None, None


class InfluentialScores:
    """Influential scores of a model's elements on an output node, captum-style.

    Parameters
    ----------
    model : nn.Module
        Built from supported modules (see the module docstring). Put in eval mode.

    Raises
    ------
    UsageError
        A module with parameters that the method does not define; the message names it.

    Examples
    --------
    >>> scores = InfluentialScores(model).attribute(x, target=5)            # doctest: +SKIP
    >>> scores.shape == x.shape                                              # doctest: +SKIP
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        for name, module in model.named_modules():
            if any(True for _ in module.children()):
                continue
            supported = isinstance(module, (*_WEIGHTED, *ACTIVATIONS, *_PASS, *_BN, Add))
            if not supported and any(True for _ in module.parameters(recurse=False)):
                raise UsageError(f"influential scores cannot handle module {name!r} ({type(module).__name__})")

    @contextmanager
    def _rules(self) -> Iterator[None]:
        handles = []

        def weighted(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
            return _WeightedRule.apply(inputs[0], out, module)

        def activation(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
            return _PassThrough.apply(inputs[0], out, None)

        def batchnorm(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
            bn: Any = module
            gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(bn.running_var)
            sign = torch.sign(gamma / torch.sqrt(bn.running_var + bn.eps))
            shape = (1, -1) + (1,) * (out.ndim - 2)
            return _PassThrough.apply(inputs[0], out, sign.view(shape))

        def addition(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
            return _AddRule.apply(inputs[0], inputs[1], out)

        for module in self.model.modules():
            if isinstance(module, Add):
                handles.append(module.register_forward_hook(addition))
            elif isinstance(module, _WEIGHTED):
                handles.append(module.register_forward_hook(weighted))
            elif isinstance(module, ACTIVATIONS):
                handles.append(module.register_forward_hook(activation))
            elif isinstance(module, _BN):
                handles.append(module.register_forward_hook(batchnorm))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def attribute(
        self,
        inputs: torch.Tensor,
        target: int | torch.Tensor,
        layer: str | None = None,
    ) -> torch.Tensor:
        """Each element's influential score on output node ``target``.

        Parameters
        ----------
        inputs : Tensor (B, ...)
        target : int or Tensor (B,)
            Output node (class index) per sample.
        layer : str, optional
            Qualified module name: score that module's output elements instead of the input's.

        Returns
        -------
        Tensor shaped like ``inputs`` (or like the layer's output), detached.
        """
        return self.attribute_layers(inputs, target, [layer] if layer is not None else [None])[0]

    def attribute_layers(
        self, inputs: torch.Tensor, target: int | torch.Tensor, layers: list[str | None]
    ) -> list[torch.Tensor]:
        """Scores at several layers (None = the input) from one sweep."""
        self.model.eval()
        x = inputs.detach().clone().requires_grad_(True)
        with torch.enable_grad(), self._rules():
            # entered after the rules, so the capture sees the rule-wrapped outputs
            with capture_outputs(self.model, [n for n in layers if n is not None]) as captured:
                out = self.model(x)
            seed = _one_hot(out, target)
            wrt = [x if n is None else captured[n] for n in layers]
            grads = torch.autograd.grad(out, wrt, grad_outputs=seed, allow_unused=True)
        return [torch.zeros_like(w) if g is None else g.detach() for w, g in zip(wrt, grads, strict=True)]


    def between(
        self, inputs: torch.Tensor, lower: str, upper: str, *, progress: Any = None, chunk_mb: float = 256.0
    ) -> torch.Tensor:
        """Influence of every unit of ``lower`` on every unit of ``upper``, per sample.

        A conv filter's entries are summed over its positions (on both sides). Returns
        (B, units_lower, units_upper), the same numbers as one backward sweep per unit of
        ``upper`` (seed: ones on all of that unit's positions), computed in one of two ways:

        - one weighted layer between the two: when every path from ``upper`` down to ``lower``
          crosses exactly one Linear/Conv2d and, above it, only element- or channel-wise rules
          (activations, BatchNorm signs, additions, pooling), the seed of upper unit j stays on
          channel j down to that layer, so one sweep with every unit seeded at once gives all
          of them; the layer's rule is then applied to all channel pairs at once,
          R[b, i, j] = sum_k W[j, i, k] sum_q x[b, i, q + k] v[b, j, q] / D[b, j, q]
          (a per-sample weight gradient), which costs about one convolution instead of one
          sweep per unit. Every consecutive pair of captured layers of the reference CNN and of
          ResNet-18 is of this kind.
        - otherwise: many units per backward call (``torch.autograd.grad(...,
          is_grads_batched=True)``), chunked so that one chunk's gradients take at most
          ``chunk_mb`` MiB.

        ``progress(k)`` is called with the number of upper units done.
        """
        self.model.eval()
        with torch.enable_grad(), self._rules():
            with capture_outputs(self.model, [lower, upper]) as captured:
                self.model(inputs.detach().clone().requires_grad_(True))
            low, up = captured[lower], captured[upper]
            n_up = up.shape[1]
            layer = _single_weighted_layer(up, low)
            if layer is not None:
                result = _one_layer_between(up, low, layer, chunk_mb)
                if progress is not None:
                    progress(n_up)
                return result.detach()
            result = torch.zeros(low.shape[0], low.shape[1], n_up, dtype=low.dtype, device=low.device)
            per_unit = max(1, low.numel() * low.element_size() + up.numel() * up.element_size())
            chunk = max(1, min(n_up, int(chunk_mb * 2**20 // per_unit)))
            for start in range(0, n_up, chunk):
                stop = min(n_up, start + chunk)
                seed = torch.zeros((stop - start, *up.shape), dtype=up.dtype, device=up.device)
                for k in range(stop - start):
                    seed[k, :, start + k] = 1.0
                (g,) = torch.autograd.grad(up, low, grad_outputs=seed, retain_graph=stop < n_up, allow_unused=True,
                                           is_grads_batched=True)
                if g is not None:  # (chunk, B, units_lower, ...) -> (B, units_lower, chunk)
                    result[:, :, start:stop] = (g.flatten(3).sum(3) if g.ndim > 3 else g).permute(1, 2, 0)
                if progress is not None:
                    progress(stop - start)
        return result.detach()


_ABOVE_OK = ("MaxPool", "AvgPool", "AdaptiveAvgPool", "AdaptiveMaxPool")  # per-channel autograd nodes
_BELOW_OK = ("MaxPool", "View", "Reshape", "UnsafeView", "AdaptiveMaxPool")  # sum-preserving, channel-keeping


def _single_weighted_layer(up: torch.Tensor, low: torch.Tensor) -> Any:
    """The autograd node of the one weighted rule that every path from ``up`` to ``low``
    crosses, if the paths have the shape :meth:`InfluentialScores.between` can do at once; else None.

    Above that node only channel-wise nodes (the pass-through and addition rules, pooling);
    below it, down to ``low``, only max-pooling and reshapes (they keep channels and the sum over
    positions). The node's module must be a Linear or a zero-padded, ungrouped Conv2d.
    """
    target, start = low.grad_fn, up.grad_fn
    if target is None or start is None:
        return None
    reaches: dict[Any, bool] = {target: True}

    def visit(node: Any) -> bool:  # does node reach low? (iterative, the graph can be deep)
        stack = [(node, iter(_children(node)))]
        reaches.setdefault(node, False)
        while stack:
            _, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                continue
            if child not in reaches:
                reaches[child] = False
                stack.append((child, iter(_children(child))))
                continue
            if reaches[child]:
                for anc, _ in stack:
                    reaches[anc] = True
        return reaches[node]

    if not visit(start):
        return None
    on_path = [n for n, r in reaches.items() if r and n is not target]
    weighted = [n for n in on_path if isinstance(n, _WeightedRule._backward_cls)]
    if len(weighted) != 1:
        return None
    node = weighted[0]
    module = node.module
    if not (isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1
                                               and module.padding_mode == "zeros")):
        return None
    below = _reachable(node, set(on_path))
    rules_above = (_PassThrough._backward_cls, _AddRule._backward_cls)
    for n in on_path:
        name = type(n).__name__
        if n is node:
            continue
        if n in below:
            if not name.startswith(_BELOW_OK):
                return None
        elif not (isinstance(n, rules_above) or name.startswith(_ABOVE_OK)):
            return None
    (x,) = node.saved_tensors
    if x.shape[0] != low.shape[0] or x.numel() // x.shape[0] % low.shape[1]:
        return None
    if isinstance(module, nn.Conv2d) and (x.ndim != 4 or x.shape[1] != low.shape[1]):
        return None
    return node


def _children(node: Any) -> list[Any]:
    """The nodes a backward step of ``node`` sends gradient to: a rule's inputs only (its
    ``out`` argument, the module's own graph, gets none)."""
    edges = node.next_functions
    if isinstance(node, (_WeightedRule._backward_cls, _PassThrough._backward_cls)):
        edges = edges[:1]
    elif isinstance(node, _AddRule._backward_cls):
        edges = edges[:2]
    return [n for n, _ in edges if n is not None]


def _reachable(node: Any, within: set[Any]) -> set[Any]:
    """Nodes of ``within`` reachable from ``node`` (not counting itself)."""
    seen: set[Any] = set()
    stack = [node]
    while stack:
        for child in _children(stack.pop()):
            if child in within and child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


def _one_layer_between(up: torch.Tensor, low: torch.Tensor, node: Any, chunk_mb: float) -> torch.Tensor:
    """(B, units_lower, units_upper) through the single weighted rule ``node`` (see ``between``)."""
    (x,) = node.saved_tensors  # read before the sweep frees them
    seen: list[torch.Tensor] = []
    handle = node.register_prehook(lambda grads: seen.append(grads[0]))
    try:  # every upper unit seeded at once: its share arrives on its own channel
        torch.autograd.grad(up, low, grad_outputs=torch.ones_like(up), retain_graph=False, allow_unused=True)
    finally:
        handle.remove()
    module = node.module
    w = module.weight.detach()
    with torch.no_grad():
        v = seen[0]
        u = _divide_or_zero(v, _bias_free(module, x.abs(), w.abs()))  # (B, out, ...)
        b, n_low = x.shape[0], low.shape[1]
        n_out = w.shape[0]
        result = torch.empty(b, n_low, n_out, dtype=x.dtype, device=x.device)
        if isinstance(module, nn.Linear):  # x: (B, n_low * P) grouped by lower unit
            xw = x.reshape(b, n_low, -1)
            wv = w.reshape(n_out, n_low, -1)
            per = max(1, int(chunk_mb * 2**20 // max(1, n_low * xw.shape[2] * n_out * x.element_size())))
            for s in range(0, b, per):
                result[s : s + per] = torch.einsum("bip,jip->bij", xw[s : s + per], wv) * u[s : s + per, None, :]
            return result
        m: Any = module
        cols = F.unfold(x, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)  # (B, Cin*kk, L)
        kk = cols.shape[1] // x.shape[1]
        wt = w.reshape(n_out, x.shape[1], kk).permute(1, 2, 0)  # (Cin, kk, out)
        uf = u.flatten(2).transpose(1, 2)  # (B, L, out)
        per = max(1, int(chunk_mb * 2**20 // max(1, cols.shape[1] * n_out * x.element_size())))
        for s in range(0, b, per):
            t = torch.bmm(cols[s : s + per], uf[s : s + per]).view(-1, x.shape[1], kk, n_out)  # (b, Cin, kk, out)
            result[s : s + per] = (t * wt).sum(2)
        return result


def _one_hot(out: torch.Tensor, target: int | torch.Tensor) -> torch.Tensor:
    seed = torch.zeros_like(out)
    if isinstance(target, int):
        if not 0 <= target < out.shape[1]:
            raise UsageError(f"target {target} is not an output node (0..{out.shape[1] - 1})")
        seed[:, target] = 1.0
    else:
        seed.scatter_(1, target.view(-1, 1).to(out.device), 1.0)
    return seed
