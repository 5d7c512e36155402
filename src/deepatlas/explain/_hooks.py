"""The hook pattern the methods share: record sites' outputs during a forward pass."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from deepatlas.models.sites import hooks

__all__ = ["capture_outputs"]


@contextmanager
def capture_outputs(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Inside the block, each forward pass stores the named sites' outputs (as they are, still
    in the autograd graph) in the yielded dict; the hooks are removed on exit.

    Names are sites of :mod:`deepatlas.models.sites` (``module`` or ``module#call``). Hooks
    registered here run after hooks registered earlier on the same module, so they see outputs
    that earlier hooks replaced (an intervention's, for example).

    Raises
    ------
    UsageError
        A name that is not a module of ``model``.
    """
    store: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        return lambda _m, _i, out: store.__setitem__(name, out)

    with hooks(model, forward={n: keep(n) for n in names}):
        yield store
