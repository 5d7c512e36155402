"""Forward-hook capture of per-unit activations, by qualified module name.

A *unit* is one dense neuron, or one conv filter reduced to one value per image by averaging
over its spatial positions (Horta & Mileo), or one feature of a token layer (a (batch, tokens,
features) output, as in a vision transformer) reduced by averaging over the tokens. Layers are
hook *sites* (:mod:`deepatlas.models.sites`): a module that runs twice per forward pass is
captured per call, ``layer1.0.relu#1`` and ``layer1.0.relu#2``. Hooks live only inside
:meth:`ActivationRecorder.hooks`; recorded tensors are detached, reduced at once and stay on
the model's device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from deepatlas.errors import IngestError, UsageError
from deepatlas.models.layers import ACTIVATIONS, NORMS
from deepatlas.models.sites import Site, hooks, list_sites

__all__ = ["CHANNELS_LAST", "ActivationRecorder", "LayerSpec", "default_layers", "reduce_units", "unit_kind"]



@dataclass(frozen=True)
class LayerSpec:
    """A captured layer.

    Attributes
    ----------
    name : str
        Qualified module name (``model.get_submodule(name)``).
    kind : {"conv", "dense", "tokens"}
        "conv" when the output is (B, C, *spatial) and units are filters (spatial mean);
        "tokens" when it is (B, T, F) from a Linear layer and units are features (token mean).
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
    """Names of leaf modules in the order the forward pass runs them (a shared one repeats)."""
    return [site.module for site in list_sites(model, example)]


_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _site(sites: list[Site], name: str) -> Site:
    return next(s for s in sites if s.name == name)


def default_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """The post-activation output of every conv and dense layer but the last (the classes).

    For each ``Conv1d/2d/3d`` or ``Linear`` call in execution order, the activation module
    that runs next, with only normalisation layers (BatchNorm, LayerNorm, GroupNorm) between,
    is taken (ReLU, GELU, ...). A layer whose output meets no activation that way (a ResNet's
    downsample conv and the conv before a residual sum, a MobileNet's linear bottleneck) is
    not a post-activation value and is left out; the block's activation after the sum is
    taken through the layer that reaches it. A model with no activation modules at all (it
    applies ``F.relu`` functionally) gets the layers themselves. The final ``Linear`` produces
    the class scores and is not a hidden layer. Sites are per call (``relu#2``). A
    channels-last map made by a Linear (inside ConvNeXt's blocks) is left out: name the blocks
    (``--layers features.1.0,...``) to capture their outputs.

    A model that knows its own structure better names its hidden layers itself with a
    ``capture_layers()`` method returning site names.
    """
    own = getattr(model, "capture_layers", None)
    if callable(own):
        return list(own())
    sites = list_sites(model, example)
    modules = dict(model.named_modules())
    weighted = [i for i, s in enumerate(sites) if isinstance(modules[s.module], _WEIGHTED)]
    if not weighted:
        raise IngestError("the model has no Conv or Linear layer to capture; pass --layers")
    functional = not any(isinstance(modules[s.module], ACTIVATIONS) for s in sites)
    names: list[str] = []
    for i in weighted[:-1]:
        pick = sites[i].name if functional else None
        j = i + 1
        while not functional and j < len(sites) and isinstance(modules[sites[j].module], NORMS):
            j += 1
        if not functional and j < len(sites) and isinstance(modules[sites[j].module], ACTIVATIONS):
            pick = sites[j].name
        if pick is not None and pick not in names and unit_kind(sites, _site(sites, pick), modules) != CHANNELS_LAST:
            names.append(pick)
    if not names:
        raise IngestError("no conv or dense layer of the model is followed by an activation; pass --layers")
    return names


def unit_kind(sites: list[Site], site: Site, modules: dict[str, nn.Module]) -> str:
    """``dense`` for (B, units), ``tokens`` for (B, T, F) after a Linear, ``channels-last`` for a
    (B, H, W, C) map after a Linear (ConvNeXt's block MLP), else ``conv`` (B, C, *spatial)."""
    shape = site.shape
    if len(shape) == 2:
        return "dense"
    before = [s for s in sites if s.order <= site.order and isinstance(modules[s.module], _WEIGHTED)]
    after_linear = bool(before) and isinstance(modules[before[-1].module], nn.Linear)
    if len(shape) == 3 and after_linear:
        return "tokens"  # (B, T, F): a Linear acts on the last axis, so the units are the features
    if len(shape) == 4 and after_linear and shape[-1] == modules[before[-1].module].out_features:
        return CHANNELS_LAST
    return "conv"


#: A (B, H, W, C) map a Linear made (ConvNeXt's inverted bottleneck runs channels-last): not
#: captured (reading it as (B, C, H, W) would make its rows the units); its block's output is.
CHANNELS_LAST = "channels-last"


def reduce_units(out: torch.Tensor, kind: str) -> torch.Tensor:
    """(B, units): a conv map's spatial mean, a token layer's mean over tokens, a dense layer as is."""
    if kind == "tokens":
        return out.mean(1)
    return out.flatten(2).mean(2) if out.ndim > 2 else out


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
    >>> import torch
    >>> from deepatlas.models import FashionCNN
    >>> _ = torch.manual_seed(0)
    >>> model = FashionCNN(1, 10, (4, 8, 8), 16, 28).eval()
    >>> x = torch.rand(6, 1, 28, 28)
    >>> rec = ActivationRecorder(model, example=x[:1])
    >>> acts, out = rec.record(x)
    >>> acts.shape == (len(x), rec.n_units), tuple(out.shape)
    (True, (6, 10))
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] | None = None, *, example: torch.Tensor,
                 autocast: bool = False) -> None:
        self.model = model
        self.autocast = autocast
        self.max_batch: int | None = None  # lowered when the device runs out of memory
        names = list(layers) if layers is not None else default_layers(model, example)
        if not names:
            raise IngestError("no layers to capture")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise IngestError(f"layer named twice: {', '.join(dupes)}")
        sites = list_sites(model, example)
        by_name = {s.name: s for s in sites}
        modules = dict(model.named_modules())
        chosen = []
        for n in names:
            if n in by_name:
                chosen.append(by_name[n])
                continue
            calls = [s.name for s in sites if s.module == n]
            if calls:
                raise IngestError(f"module {n!r} runs {len(calls)} times per forward pass (a shared module); "
                                  f"name one call: {', '.join(calls)}")
            if n in modules and n:
                inner = [s for s in sites if s.module.startswith(n + ".")]
                if not inner:
                    raise IngestError(f"layer {n!r} does not run in the forward pass")
                chosen.append(self._container_site(n, inner, example))
                continue
            valid = ", ".join(s.name for s in sites)
            raise IngestError(f"unknown layer {n!r}; the model's layers are: {valid}")
        chosen.sort(key=lambda s: s.order)
        for site in chosen:
            if len(site.shape) < 2:
                raise IngestError(f"layer {site.name!r} does not output a (batch, units, ...) tensor")
            if unit_kind(sites, site, modules) == CHANNELS_LAST:
                raise IngestError(f"layer {site.name!r} outputs a channels-last map {tuple(site.shape)} made by a Linear "
                                  "(as inside ConvNeXt's blocks); deepatlas reads maps as (batch, channels, ...): "
                                  "capture the block's output instead")
        self.sites: tuple[Site, ...] = tuple(chosen)
        self.layers: tuple[LayerSpec, ...] = tuple(
            LayerSpec(site.name, kind, int(site.shape[-1] if kind == "tokens" else site.shape[1]), i + 1)
            for i, site in enumerate(chosen)
            for kind in [unit_kind(sites, site, modules)]
        )

    def _container_site(self, name: str, inner: list[Site], example: torch.Tensor) -> Site:
        """A non-leaf module (a whole block): its output, placed where its last leaf runs."""
        shape: tuple[int, ...] = ()

        def grab(_m: nn.Module, _i: object, out: object) -> None:
            nonlocal shape
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else ()

        try:
            with hooks(self.model, forward={name: grab}), torch.no_grad():
                self.model(example)
        except UsageError as exc:
            raise IngestError(str(exc)) from None
        last = inner[-1]
        return Site(name, name, 1, 1, type(self.model.get_submodule(name)).__name__, shape, last.order)

    @property
    def n_units(self) -> int:
        return sum(spec.size for spec in self.layers)

    @contextmanager
    def hooks(self) -> Iterator[dict[str, torch.Tensor]]:
        """Register the hooks; yield the dict they fill (name -> (B, units)); remove them."""
        store: dict[str, torch.Tensor] = {}

        def make(spec: LayerSpec) -> Callable[[nn.Module, object, torch.Tensor], None]:
            def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
                store[spec.name] = reduce_units(out.detach(), spec.kind)

            return hook

        with hooks(self.model, forward={s.name: make(s) for s in self.layers}):
            yield store

    @torch.no_grad()
    def record(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``inputs`` through the model.

        When the device runs out of memory the batch is split in halves (and later batches
        are cut to the size that worked) until one image at a time; only then is it an error.
        With ``autocast`` the forward pass runs in reduced precision (bfloat16 on a CPU,
        float16 on CUDA); the recorded values are returned in float32.

        Returns
        -------
        activations : torch.Tensor
            (B, n_units), the layers' units side by side in :attr:`layers` order.
        output : torch.Tensor
            The model's output (B, n_classes), detached.

        Raises
        ------
        IngestError
            Out of memory with one image.
        """
        while True:
            step = self.max_batch or len(inputs)
            try:
                parts = [self._record(inputs[s : s + step]) for s in range(0, len(inputs), step)]
                break
            except torch.OutOfMemoryError:
                if step <= 1:
                    raise IngestError(f"the model does not fit in the memory of {inputs.device} even for one image; "
                                      "use --device cpu") from None
                self.max_batch = step // 2
                if inputs.device.type == "cuda":
                    torch.cuda.empty_cache()
        if len(parts) == 1:
            return parts[0]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _record(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        amp = torch.autocast(inputs.device.type, dtype=torch.float16 if inputs.device.type == "cuda" else torch.bfloat16,
                             enabled=self.autocast)
        with self.hooks() as store, amp:
            out = self.model(inputs)
        acts = torch.cat([store[s.name] for s in self.layers], dim=1)
        if self.autocast:
            acts, out = acts.float(), out.float()
        return acts, out.detach()
