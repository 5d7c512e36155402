"""One context manager for the hook pattern the methods share: record modules' outputs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from deepatlas.errors import UsageError

__all__ = ["capture_outputs"]


@contextmanager
def capture_outputs(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Inside the block, each forward pass stores the named modules' outputs (as they are,
    still in the autograd graph) in the yielded dict; the hooks are removed on exit.

    Hooks registered here run after hooks registered earlier, so they see outputs that earlier
    hooks replaced (the influential-score rules rely on this).

    Raises
    ------
    UsageError
        A name that is not a module of ``model``.
    """
    store: dict[str, torch.Tensor] = {}
    modules = {}
    for name in names:
        try:
            modules[name] = model.get_submodule(name)
        except AttributeError:
            raise UsageError(f"unknown layer {name!r}") from None
    handles = [m.register_forward_hook(lambda _m, _i, out, n=n: store.__setitem__(n, out)) for n, m in modules.items()]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()
