"""Hook sites: where in a model's forward pass deepatlas reads or changes a tensor.

A *site* is one call of one module. Most modules run once per forward pass and their site is
their qualified name (``features.3``). A module that runs several times per pass (torchvision's
ResNet blocks call one ``relu`` twice) has one site per call, ``layer1.0.relu#1`` and
``layer1.0.relu#2``, counted from 1 in execution order; its bare name is then ambiguous and
refused. Every hook deepatlas registers goes through :func:`hooks`, a context manager that
owns the handles and removes them on exit (zennit's ``Composite.context``, TransformerLens'
``with model.hooks(...)``).

Examples
--------
>>> import torch
>>> from torch import nn
>>> relu = nn.ReLU()
>>> model = nn.Sequential(nn.Linear(2, 2), relu, nn.Linear(2, 2), relu)
>>> [s.name for s in list_sites(model, torch.zeros(1, 2))]
['0', '1#1', '2', '1#2']
>>> seen = {}
>>> with hooks(model, forward={"1#2": lambda m, i, o: seen.setdefault("out", o.shape)}):
...     _ = model(torch.zeros(3, 2))
>>> seen["out"]
torch.Size([3, 2])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from deepatlas.errors import UsageError

__all__ = ["Site", "hooks", "list_sites", "output_bytes", "split_site"]

ForwardHook = Callable[[nn.Module, tuple[Any, ...], Any], Any]
PreHook = Callable[[nn.Module, tuple[Any, ...]], Any]


@dataclass(frozen=True)
class Site:
    """One call of one leaf module in a forward pass.

    Attributes
    ----------
    name : str
        ``module`` or ``module#call`` (see the module docstring).
    module : str
        Qualified module name.
    call : int
        1-based call number of that module within one forward pass.
    calls : int
        How often that module runs per forward pass.
    type : str
        The module's class name.
    shape : tuple of int
        Output shape for the example batch (empty when the output is not a tensor).
    order : int
        Position in execution order, from 1.
    """

    name: str
    module: str
    call: int
    calls: int
    type: str
    shape: tuple[int, ...]
    order: int


def split_site(name: str) -> tuple[str, int | None]:
    """``"a.b#2"`` -> ``("a.b", 2)``; ``"a.b"`` -> ``("a.b", None)``."""
    module, sep, call = name.rpartition("#")
    if not sep:
        return name, None
    if not call.isdigit() or int(call) < 1 or not module:
        raise UsageError(f"bad layer {name!r}: write module#N with N >= 1 for the N-th call of a shared module")
    return module, int(call)


def list_sites(model: nn.Module, example: torch.Tensor) -> list[Site]:
    """Every leaf module call of one forward pass on ``example``, in execution order."""
    calls: list[tuple[str, str, tuple[int, ...]]] = []
    handles = []
    for name, module in model.named_modules():
        if name and not any(True for _ in module.children()):
            def record(m: nn.Module, _i: object, out: object, n: str = name) -> None:
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else ()
                calls.append((n, type(m).__name__, shape))

            handles.append(module.register_forward_hook(record))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    total: dict[str, int] = {}
    for n, _, _ in calls:
        total[n] = total.get(n, 0) + 1
    seen: dict[str, int] = {}
    sites = []
    for i, (n, kind, shape) in enumerate(calls):
        seen[n] = seen.get(n, 0) + 1
        name = n if total[n] == 1 else f"{n}#{seen[n]}"
        sites.append(Site(name, n, seen[n], total[n], kind, shape, i + 1))
    return sites


def output_bytes(model: nn.Module, example: torch.Tensor) -> float:
    """Bytes that one image's module outputs take in one forward pass (every leaf module call,
    summed; ``example``'s dtype): what autograd keeps for a backward pass, and an upper bound
    of what a no-grad pass holds at once."""
    sites = list_sites(model, example)
    per = sum(math.prod(s.shape[1:]) for s in sites if len(s.shape) >= 1)
    return float(per * example.element_size())


def _resolve(model: nn.Module, name: str) -> tuple[nn.Module, int | None]:
    if name == "":
        return model, None  # the model itself
    module_name, call = split_site(name)
    try:
        return model.get_submodule(module_name), call
    except AttributeError:
        raise UsageError(f"unknown layer {name!r}; `deepatlas inspect` lists the model's layers") from None


@contextmanager
def hooks(
    model: nn.Module,
    forward: Mapping[str, ForwardHook] | None = None,
    pre: Mapping[str, PreHook] | None = None,
    *,
    always_call: bool = False,
) -> Iterator[None]:
    """Register forward (and forward-pre) hooks by site name; remove every handle on exit.

    A hook for ``module#k`` fires only on the k-th call of that module in each forward pass of
    ``model`` (the count restarts with every call of ``model``). A hook for a bare module name
    fires on every call.

    Parameters
    ----------
    model : nn.Module
    forward : mapping of site name -> hook(module, inputs, output), optional
        As :meth:`torch.nn.Module.register_forward_hook`: a non-None return replaces the output.
    pre : mapping of site name -> hook(module, inputs), optional
        As :meth:`torch.nn.Module.register_forward_pre_hook`.
    always_call : bool, default False
        Forward hooks run even when the module's forward raises (for bookkeeping that must
        be undone, as :meth:`torch.nn.Module.register_forward_hook`'s ``always_call``).

    The empty name ``""`` is the model itself.

    Raises
    ------
    UsageError
        A name that is not a module of ``model`` or a malformed ``#call`` suffix.
    """
    counts: dict[int, int] = {}  # id(module) -> calls so far in this forward pass of model
    handles: list[Any] = []

    def reset(_m: nn.Module, _i: object) -> None:
        counts.clear()

    def count(m: nn.Module, _i: object) -> None:
        counts[id(m)] = counts.get(id(m), 0) + 1

    def on_call(call: int | None, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, run only on the ``call``-th call of its module (every call when None)."""
        if call is None:
            return fn
        return lambda m, *args: fn(m, *args) if counts.get(id(m)) == call else None

    try:
        handles.append(model.register_forward_pre_hook(reset))
        resolved = {name: _resolve(model, name) for name in [*(pre or {}), *(forward or {})]}
        for module in {id(m): m for m, _ in resolved.values()}.values():  # one counter per module, first
            handles.append(module.register_forward_pre_hook(count))
        for name, pre_fn in (pre or {}).items():
            module, call = resolved[name]
            handles.append(module.register_forward_pre_hook(on_call(call, pre_fn)))
        for name, fwd_fn in (forward or {}).items():
            module, call = resolved[name]
            handles.append(module.register_forward_hook(on_call(call, fwd_fn), always_call=always_call))
        yield
    finally:
        for h in handles:
            h.remove()
