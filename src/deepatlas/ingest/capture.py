"""Forward-hook capture of per-unit activations, by qualified module name.

A *unit* is one dense neuron, or one conv filter reduced to one value per image by averaging
over its spatial positions (Horta & Mileo). Hooks live only inside
:meth:`ActivationRecorder.hooks`; recorded tensors are detached, reduced at once and stay on
the model's device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from deepatlas.errors import IngestError
from deepatlas.models.layers import ACTIVATIONS

__all__ = ["ActivationRecorder", "LayerSpec", "default_layers"]



@dataclass(frozen=True)
class LayerSpec:
    """A captured layer.

    Attributes
    ----------
    name : str
        Qualified module name (``model.get_submodule(name)``).
    kind : {"conv", "dense"}
        "conv" when the module outputs (B, C, H, W) and units are filters.
    size : int
        Number of units.
    position : int
        Order of execution in the forward pass, from 1 (0 is the input layer).
    """

    name: str
    kind: str
    size: int
    position: int


def _leaf_order(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of leaf modules in the order the forward pass runs them."""
    order: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if name and not any(True for _ in module.children()):
            handles.append(module.register_forward_hook(lambda m, i, o, n=name: order.append(n)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return order


def default_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """The post-activation output of every conv and dense layer but the last (the classes).

    For each ``Conv1d/2d/3d`` or ``Linear`` in execution order, the activation module that runs
    right after it (ReLU, GELU, ...) is taken if there is one, else the layer itself (e.g. when
    the model applies ``F.relu`` functionally). The final ``Linear`` produces the class scores
    and is not a hidden layer.

    A model that knows its own structure better (a residual network, where "the activation
    after the conv" skips a normalisation and a sum) names its hidden layers itself with a
    ``capture_layers()`` method, e.g. :meth:`deepatlas.models.resnet.ResNet18.capture_layers`.
    """
    own = getattr(model, "capture_layers", None)
    if callable(own):
        return list(own())
    order = _leaf_order(model, example)
    modules = dict(model.named_modules())
    weighted = [i for i, n in enumerate(order) if isinstance(modules[n], (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    if not weighted:
        raise IngestError("the model has no Conv or Linear layer to capture; pass --layers")
    names: list[str] = []
    for i in weighted[:-1]:
        nxt = order[i + 1] if i + 1 < len(order) else None
        pick = nxt if nxt is not None and isinstance(modules[nxt], ACTIVATIONS) else order[i]
        if pick not in names:
            names.append(pick)
    return names


class ActivationRecorder:
    """Record per-unit activations of named layers, plus the model's output.

    Parameters
    ----------
    model : nn.Module
        Any classifier returning (B, n_classes) scores.
    layers : sequence of str, optional
        Qualified module names; default :func:`default_layers`.
    example : torch.Tensor
        One input batch (a single image is enough) used to resolve layers and sizes.

    Raises
    ------
    IngestError
        Unknown or duplicated layer names, a layer that runs more than once per forward pass,
        or an output that is neither (B, units) nor (B, C, *spatial).

    Examples
    --------
    >>> rec = ActivationRecorder(model, example=x[:1])       # doctest: +SKIP
    >>> acts, out = rec.record(x)                            # doctest: +SKIP
    >>> acts.shape == (len(x), rec.n_units)                  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] | None = None, *, example: torch.Tensor) -> None:
        self.model = model
        modules = dict(model.named_modules())
        names = list(layers) if layers is not None else default_layers(model, example)
        if not names:
            raise IngestError("no layers to capture")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise IngestError(f"layer named twice: {', '.join(dupes)}")
        unknown = [n for n in names if n not in modules or n == ""]
        if unknown:
            valid = ", ".join(n for n in modules if n)
            raise IngestError(f"unknown layer {unknown[0]!r}; the model's modules are: {valid}")
        order = _leaf_order(model, example)
        position = {}
        for n in names:
            first = self._first_run(n, order, modules)
            if first is None:
                raise IngestError(f"layer {n!r} does not run in the forward pass")
            position[n] = first
        names.sort(key=position.__getitem__)
        shapes = self._probe_shapes(names, example)
        self.layers: tuple[LayerSpec, ...] = tuple(
            LayerSpec(n, "conv" if len(shapes[n]) > 2 else "dense", int(shapes[n][1]), i + 1)
            for i, n in enumerate(names)
        )

    @staticmethod
    def _first_run(name: str, order: list[str], modules: dict[str, nn.Module]) -> int | None:
        prefix = name + "."
        for i, leaf in enumerate(order):
            if leaf == name or leaf.startswith(prefix):
                return i
        return None

    def _probe_shapes(self, names: list[str], example: torch.Tensor) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        calls: dict[str, int] = dict.fromkeys(names, 0)

        def probe(name: str):
            def hook(_m: nn.Module, _i: object, out: object) -> None:
                if not isinstance(out, torch.Tensor) or out.ndim < 2:
                    raise IngestError(f"layer {name!r} does not output a (batch, units, ...) tensor")
                calls[name] += 1
                shapes[name] = tuple(out.shape)

            return hook

        handles = [self.model.get_submodule(n).register_forward_hook(probe(n)) for n in names]
        try:
            with torch.no_grad():
                self.model(example)
        finally:
            for h in handles:
                h.remove()
        repeated = [n for n, c in calls.items() if c > 1]
        if repeated:
            raise IngestError(
                f"module {repeated[0]!r} runs {calls[repeated[0]]} times per forward pass (a shared "
                "module); capture a module that runs once"
            )
        return shapes

    @property
    def n_units(self) -> int:
        return sum(spec.size for spec in self.layers)

    @contextmanager
    def hooks(self) -> Iterator[dict[str, torch.Tensor]]:
        """Register the hooks; yield the dict they fill (name -> (B, units)); remove them."""
        store: dict[str, torch.Tensor] = {}

        def make(name: str):
            def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
                t = out.detach()
                store[name] = t.flatten(2).mean(2) if t.ndim > 2 else t

            return hook

        handles = [self.model.get_submodule(s.name).register_forward_hook(make(s.name)) for s in self.layers]
        try:
            yield store
        finally:
            for h in handles:
                h.remove()

    @torch.no_grad()
    def record(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``inputs`` through the model.

        Returns
        -------
        activations : torch.Tensor
            (B, n_units), the layers' units side by side in :attr:`layers` order.
        output : torch.Tensor
            The model's output (B, n_classes), detached.
        """
        with self.hooks() as store:
            out = self.model(inputs)
        return torch.cat([store[s.name] for s in self.layers], dim=1), out.detach()
