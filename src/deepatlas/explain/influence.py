"""Influential scores (Jung, Shin & Kwon): how much each element drives an output node.

Between consecutive node layers with values L (lower) and weights w,

    J[l, l+1]_ij = w_ij * L_i / sum_i |w_ij * L_i|        (0 where the sum is 0; no biases)

and J[l, m] = J[l, l+1] @ ... @ J[m-1, m]. The score of element i on output node t is
J[input, output]_{i, t}. Nothing here builds J: one backward-style sweep per target carries
v_{l+1} down with v_l = L * W^T (v_{l+1} / D), D = |W| |L|, which is J[l, l+1] @ v_{l+1}.

The rules are applied to the *operations* of the forward pass, not to module types: a
``TorchFunctionMode`` sees every torch function the model calls, so a functional ``+`` (a
stock torchvision ResNet's ``out += identity``), ``F.relu`` in ``forward`` or a module called
twice all get the same rule as their module forms. One table, :data:`RULES`, maps each
operation to its rule (zennit's ``layer_map`` idea, at the level of functions). Choices where
the paper is silent are marked *:

  linear, conv1d/2d/3d   the rule above (the same sum over each output position's receptive field)
  avg_pool, adaptive_avg_pool   * the rule above with the pool's weights 1/k: an average is a
                         linear node like any other, so v_i = x_i v / sum_window |x_i|
  max_pool               routes through the arg-max (autograd's own routing)
  a + b, both activations   a linear map with weight 1 per input (the paper's rule with w = 1):
                         v_a = a v / (|a| + |b|), v_b = b v / (|a| + |b|), elementwise; 0 where
                         |a| + |b| = 0. A constant or parameter summand is a bias: ignored.
  activations (relu, gelu, silu, hardswish, sigmoid, tanh, ...)   * pass-through: the paper's
                         nodes are post-activation values and J ignores the activation function
  batch_norm (eval), layer_norm, group_norm, x * constant   * an elementwise rescaling of one
                         node folds into the weighted layer before it; scaling a node's incoming
                         weights by s cancels in the normalisation except for sign(s), so the
                         sweep multiplies by sign(s) (layer/group norm: per-sample mean and
                         scale taken as constants of the sample, like batch norm's running ones)
  x * gate, both activations, the gate broadcast over x (squeeze-excite)   * the gate is a
                         per-sample rescaling of x as above: v_x = v sign(gate); the gate's own
                         branch receives no influence (it is a weight, not a node)
  cat, flatten, reshape, permute, pad, dropout (eval), ...   routing: each element keeps its influence
Anything else that combines two activations (matmul/bmm/einsum: attention; an elementwise
product of equal shapes) or uses a parameter in an operation without a rule raises
:class:`~deepatlas.errors.UsageError` naming the operation and the module.

References
----------
Jung, Shin & Kwon, influential scores; the formulas are restated below, the reference (whose
title, venue and identifier could not be confirmed offline) in docs/ARCHITECTURE.md, "References".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from deepatlas.errors import UsageError
from deepatlas.explain._hooks import capture_outputs
from deepatlas.models.sites import hooks

__all__ = ["RULES", "InfluentialScores"]


def _divide_or_zero(g: torch.Tensor, denom: torch.Tensor) -> torch.Tensor:
    """g / denom where denom > 0, else 0: the rule's normaliser, 0 for a node with no input mass."""
    return torch.where(denom > 0, g / denom.clamp_min(torch.finfo(g.dtype).tiny), torch.zeros_like(g))


@dataclass(frozen=True)
class _Call:
    """The linear operation a :class:`_LinearRule` node stands for, for code that reads the
    autograd graph: ``func(x, weight, None, *args, **kwargs)`` (weight None for pooling, then
    ``func(x, *args, **kwargs)``), and where it ran."""

    func: Callable[..., Any]
    weight: torch.Tensor | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    site: str


class _LinearRule(torch.autograd.Function):
    """Forward: the operation as computed. Backward: v_in = x * W^T (v_out / (|W| |x|)).

    ``op(x)`` is the operation without bias and ``op_abs(x)`` the same with |W|.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, out: torch.Tensor, op: Callable[[torch.Tensor], torch.Tensor],
                op_abs: Callable[[torch.Tensor], torch.Tensor], call: _Call) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.op, ctx.op_abs, ctx.call = op, op_abs, call
        return out.view_as(out)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None, None]:
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            u = _divide_or_zero(g, ctx.op_abs(x.detach().abs()))
            xr = x.detach().requires_grad_(True)
            (back,) = torch.autograd.grad(ctx.op(xr), xr, grad_outputs=u)
        return x * back, None, None, None, None


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
        return _unbroadcast(a * u, a.shape), _unbroadcast(b * u, b.shape), None


class _PassThrough(torch.autograd.Function):
    """Forward: the operation's output. Backward: v to x unchanged (times ``scale`` if given)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, out: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        ctx.scale = scale
        ctx.shape = x.shape
        return out.view_as(out)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        v = g if ctx.scale is None else g * ctx.scale
        return _unbroadcast(v, ctx.shape), None, None


def _unbroadcast(v: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum ``v`` down to ``shape`` (the reverse of broadcasting)."""
    if v.shape == shape:
        return v
    while v.ndim > len(shape):
        v = v.sum(0)
    dims = tuple(i for i, (a, b) in enumerate(zip(v.shape, shape, strict=True)) if b == 1 and a != 1)
    return v.sum(dims, keepdim=True) if dims else v


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], i: int, name: str, default: Any = None) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _is_node(t: Any) -> bool:
    """An activation: the input or a tensor computed from it (not a parameter or a constant).

    The sweep's input requires grad, so every value that depends on it does too."""
    return isinstance(t, torch.Tensor) and t.requires_grad and not isinstance(t, nn.Parameter)


# --- the rules: rule(func, args, kwargs, site) -> output -------------------------------------

Rule = Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any], str], Any]


def _weighted(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], site: str) -> Any:
    x, w = args[0], _arg(args, kwargs, 1, "weight")
    rest = list(args[3:])
    out = func(*args, **kwargs)
    if not _is_node(x):
        return out
    wd = w.detach()
    extra = {k: v for k, v in kwargs.items() if k not in ("input", "weight", "bias")}

    def op(t: torch.Tensor) -> torch.Tensor:
        return func(t, wd, None, *rest, **extra)

    def op_abs(t: torch.Tensor) -> torch.Tensor:
        return func(t, wd.abs(), None, *rest, **extra)

    return _LinearRule.apply(x, out, op, op_abs, _Call(func, wd, tuple(rest), extra, site))


def _average(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], site: str) -> Any:
    x = args[0]
    out = func(*args, **kwargs)
    if not _is_node(x):
        return out

    def op(t: torch.Tensor) -> torch.Tensor:
        return func(t, *args[1:], **kwargs)

    return _LinearRule.apply(x, out, op, op, _Call(func, None, tuple(args[1:]), kwargs, site))


def _add(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], site: str) -> Any:
    a, b = args[0], _arg(args, kwargs, 1, "other")
    if kwargs.get("alpha", 1) != 1 or not (_is_node(a) and _is_node(b)):
        return func(*args, **kwargs)  # a bias or a constant: autograd's identity to the node
    out = torch.add(a, b)  # never in place: the rule keeps a and b for its backward
    return _AddRule.apply(a, b, out)


def _mul(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], site: str) -> Any:
    a, b = args[0], _arg(args, kwargs, 1, "other")
    out = torch.mul(a, b)
    if _is_node(a) and _is_node(b):
        if getattr(a, "_deepatlas_gate", False) != getattr(b, "_deepatlas_gate", False):
            x, gate = (b, a) if getattr(a, "_deepatlas_gate", False) else (a, b)  # a sigmoid's output gates
        elif a.shape != b.shape:
            x, gate = (a, b) if a.numel() >= b.numel() else (b, a)  # the gate broadcasts over x
        else:
            raise UsageError(f"influential scores have no rule for an elementwise product of two activations of "
                             f"the same shape ({_name(func)} in {site}); write the activation as a module (nn.SiLU)")
        return _PassThrough.apply(x, out, torch.sign(gate.detach()))
    if _is_node(a) or _is_node(b):
        x, c = (a, b) if _is_node(a) else (b, a)
        scale = torch.sign(c.detach()) if isinstance(c, torch.Tensor) else float(c > 0) - float(c < 0)
        return _PassThrough.apply(x, out, torch.as_tensor(scale, dtype=x.dtype, device=x.device))
    return out


def _activation(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], site: str) -> Any:
    x = args[0] if args else kwargs.get("input")
    if "inplace" in kwargs:
        kwargs = {**kwargs, "inplace": False}
    out = func(*args, **kwargs)
    if not _is_node(x):
        return out
    out = _PassThrough.apply(x, out, None)
    if func in _GATES:
        out._deepatlas_gate = True  # read by _mul: this value gates another
    return out


def _batch_norm(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], site: str) -> Any:
    x, var, weight = args[0], _arg(args, kwargs, 2, "running_var"), _arg(args, kwargs, 3, "weight")
    training, eps = _arg(args, kwargs, 5, "training", False), _arg(args, kwargs, 7, "eps", 1e-5)
    if training or var is None:
        raise UsageError(f"batch norm in {site} uses batch statistics; put the model in eval mode")
    out = func(*args, **kwargs)
    if not _is_node(x):
        return out
    gamma = weight.detach() if weight is not None else torch.ones_like(var)
    sign = torch.sign(gamma / torch.sqrt(var + eps))
    return _PassThrough.apply(x, out, sign.view((1, -1) + (1,) * (x.ndim - 2)))


def _norm_last(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], site: str) -> Any:
    x, weight = args[0], _arg(args, kwargs, 2, "weight")
    out = func(*args, **kwargs)
    if not _is_node(x):
        return out
    if weight is None:
        return _PassThrough.apply(x, out, None)
    if func is F.group_norm:  # weight per channel (dim 1)
        scale = torch.sign(weight.detach()).view((1, -1) + (1,) * (x.ndim - 2))
    else:  # layer norm: weight over the trailing normalized_shape
        scale = torch.sign(weight.detach())
    return _PassThrough.apply(x, out, scale)


def _refuse(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], site: str) -> Any:
    operands = [a for a in args if isinstance(a, torch.Tensor)]
    if sum(_is_node(a) for a in operands) >= 2 or func in _ALWAYS_REFUSED:
        raise UsageError(f"influential scores have no rule for {_name(func)} of two activations in {site} "
                         "(attention); the paper defines none")
    return func(*args, **kwargs)


_ACTIVATION_FUNCS = (F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, F.relu6, F.hardtanh, F.gelu,
                     F.silu, F.hardswish, F.hardsigmoid, F.sigmoid, torch.sigmoid, torch.Tensor.sigmoid, F.tanh,
                     torch.tanh, torch.Tensor.tanh, F.leaky_relu, F.elu, F.selu, F.celu, F.softplus, F.mish)
_GATES = (F.sigmoid, torch.sigmoid, torch.Tensor.sigmoid, F.hardsigmoid)
_ALWAYS_REFUSED = (F.multi_head_attention_forward, F.scaled_dot_product_attention)

#: operation -> rule. Operations not listed run as they are (autograd's routing), unless they
#: use a parameter, which is refused (the paper defines no rule for them).
RULES: dict[Callable[..., Any], Rule] = {
    F.linear: _weighted, torch.conv1d: _weighted, torch.conv2d: _weighted, torch.conv3d: _weighted,
    F.avg_pool1d: _average, F.avg_pool2d: _average, F.avg_pool3d: _average, F.adaptive_avg_pool1d: _average,
    F.adaptive_avg_pool2d: _average, F.adaptive_avg_pool3d: _average,
    torch.add: _add, torch.Tensor.add: _add, torch.Tensor.add_: _add, torch.Tensor.__add__: _add,
    torch.Tensor.__radd__: _add, torch.Tensor.__iadd__: _add,
    torch.mul: _mul, torch.Tensor.mul: _mul, torch.Tensor.mul_: _mul, torch.Tensor.__mul__: _mul,
    torch.Tensor.__rmul__: _mul, torch.Tensor.__imul__: _mul,
    F.batch_norm: _batch_norm, F.layer_norm: _norm_last, F.group_norm: _norm_last,
    **dict.fromkeys(_ACTIVATION_FUNCS, _activation),
    **dict.fromkeys((torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm, torch.einsum,
                     torch.baddbmm, *_ALWAYS_REFUSED), _refuse),
}

#: operations (by name) that may take a parameter without a rule of their own: they only route
#: or describe values (ViT's class token is expanded and concatenated, for example)
_ROUTING = {"cat", "stack", "expand", "expand_as", "reshape", "view", "view_as", "flatten", "permute", "transpose",
            "contiguous", "__getitem__", "to", "clone", "dropout", "size", "dim", "__get__", "unsqueeze", "squeeze",
            "type", "float", "double", "half", "detach", "numel", "__len__", "__format__", "__repr__"}


def _name(func: Callable[..., Any]) -> str:
    return getattr(func, "__name__", None) or str(func)


class _RuleMode(TorchFunctionMode):
    """Applies :data:`RULES` to every torch function the model calls during a forward pass."""

    def __init__(self, where: Callable[[], str]) -> None:
        super().__init__()
        self.where = where

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        rule = RULES.get(func)
        if rule is not None:
            return rule(func, args, kwargs, self.where())
        if _name(func) not in _ROUTING and any(isinstance(a, nn.Parameter) for a in (*args, *kwargs.values())):
            raise UsageError(f"influential scores have no rule for {_name(func)} with a parameter in {self.where()}")
        return func(*args, **kwargs)


class InfluentialScores:
    """Influential scores of a model's elements on an output node, captum-style.

    Works on any model built from the operations of :data:`RULES` and routing operations:
    stock torchvision ResNets, VGG, MobileNet, EfficientNet, DenseNet and ConvNeXt among them;
    modules may be called several times and additions may be written with ``+``.

    Parameters
    ----------
    model : nn.Module
        Put in eval mode.

    Raises
    ------
    UsageError
        At the first forward pass, an operation the method has no rule for; the message names
        the operation and the module.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> m = nn.Sequential(nn.Linear(2, 1, bias=False)).double()
    >>> with torch.no_grad():
    ...     _ = m[0].weight.copy_(torch.tensor([[1.0, 3.0]]))
    >>> InfluentialScores(m).attribute(torch.tensor([[1.0, 1.0]], dtype=torch.float64), target=0)
    tensor([[0.2500, 0.7500]], dtype=torch.float64)

    References
    ----------
    Jung, Shin & Kwon, influential scores (title, venue and identifier: see docs/ARCHITECTURE.md,
    "References").
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    @contextmanager
    def _rules(self) -> Iterator[None]:
        """While inside, every forward pass of the model applies the rules (and only that pass:
        the mode is entered by a pre-hook of the model and left by its forward hook, so the
        backward sweeps run without it)."""
        stack: list[str] = []
        mode = _RuleMode(lambda: f"module {stack[-1]!r}" if stack else "the model's forward")
        entered: list[bool] = []

        def enter(_m: nn.Module, _i: object) -> None:
            mode.__enter__()
            entered.append(True)

        def leave(_m: nn.Module, _i: object, _o: object) -> None:
            if entered:
                entered.pop()
                mode.__exit__(None, None, None)

        def push(name: str) -> Callable[[nn.Module, object], None]:
            return lambda _m, _i: stack.append(name)

        def pop(_m: nn.Module, _i: object, _o: object) -> None:
            stack.pop()

        names = [n for n, _ in self.model.named_modules() if n]
        try:
            with hooks(self.model, pre={"": enter, **{n: push(n) for n in names}},
                       forward={"": leave, **dict.fromkeys(names, pop)}, always_call=True):
                yield
        finally:
            while entered:  # a forward pass that raised before its hook could run
                entered.pop()
                mode.__exit__(None, None, None)

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


    def one_sweep(self, inputs: torch.Tensor, lower: str, upper: str) -> bool:
        """Whether :meth:`between` does ``lower`` -> ``upper`` in one backward sweep (one weighted
        layer between them) rather than one sweep per unit of ``upper`` (tried on ``inputs``)."""
        self.model.eval()
        with torch.enable_grad(), self._rules():
            with capture_outputs(self.model, [lower, upper]) as captured:
                self.model(inputs.detach().clone().requires_grad_(True))
            return _single_weighted_layer(captured[upper], captured[lower]) is not None

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
    weighted = [n for n in on_path if _is_linear_node(n) and n.call.weight is not None]
    if len(weighted) != 1:
        return None
    node = weighted[0]
    call: _Call = node.call
    conv = _conv_params(call) if call.func is torch.conv2d else None
    if not (call.func is F.linear or (conv is not None and conv["groups"] == 1 and not isinstance(conv["padding"], str))):
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
        elif not (isinstance(n, rules_above) or name.startswith(_ABOVE_OK) or _is_linear_node(n)):
            return None  # (a linear node other than `node` is an average pooling: channel-wise)
    (x,) = node.saved_tensors
    if x.shape[0] != low.shape[0] or x.numel() // x.shape[0] % low.shape[1]:
        return None
    if conv is not None and (x.ndim != 4 or x.shape[1] != low.shape[1]):
        return None
    return node


def _is_linear_node(node: Any) -> bool:
    return isinstance(node, _LinearRule._backward_cls)


def _conv_params(call: _Call) -> dict[str, Any]:
    """stride, padding, dilation, groups of a recorded ``conv2d(x, w, None, *args, **kwargs)``."""
    names = ("stride", "padding", "dilation", "groups")
    params: dict[str, Any] = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}
    params.update(dict(zip(names, call.args, strict=False)))
    params.update({k: v for k, v in call.kwargs.items() if k in names})
    return params


def _children(node: Any) -> list[Any]:
    """The nodes a backward step of ``node`` sends gradient to: a rule's inputs only (its
    ``out`` argument, the module's own graph, gets none)."""
    edges = node.next_functions
    if isinstance(node, (_LinearRule._backward_cls, _PassThrough._backward_cls)):
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
    call: _Call = node.call
    assert call.weight is not None
    w = call.weight
    with torch.no_grad():
        v = seen[0]
        u = _divide_or_zero(v, call.func(x.abs(), w.abs(), None, *call.args, **call.kwargs))  # (B, out, ...)
        b, n_low = x.shape[0], low.shape[1]
        n_out = w.shape[0]
        result = torch.empty(b, n_low, n_out, dtype=x.dtype, device=x.device)
        if call.func is F.linear:  # x: (B, n_low * P) grouped by lower unit
            xw = x.reshape(b, n_low, -1)
            wv = w.reshape(n_out, n_low, -1)
            per = max(1, int(chunk_mb * 2**20 // max(1, n_low * xw.shape[2] * n_out * x.element_size())))
            for s in range(0, b, per):
                result[s : s + per] = torch.einsum("bip,jip->bij", xw[s : s + per], wv) * u[s : s + per, None, :]
            return result
        m = _conv_params(call)
        cols = F.unfold(x, tuple(w.shape[2:]), dilation=m["dilation"], padding=m["padding"], stride=m["stride"])  # (B, Cin*kk, L)
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
