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

__all__ = ["BLOCK_TYPES", "CHANNELS_LAST", "ActivationRecorder", "LayerSpec", "block_of", "blocks", "default_layers",
           "is_block", "reduce_units", "unit_kind"]



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


#: Module classes that are one block of a stock architecture (torchvision, timm): the default
#: capture set takes a block's output, not the activations inside it (what a person calls the
#: model's layers; a squeeze-excite gate or a bottleneck's inner ReLU only when named).
BLOCK_TYPES = frozenset({
    "BasicBlock", "Bottleneck",  # ResNet, ResNeXt, Wide ResNet (torchvision and timm)
    "_DenseBlock", "_Transition",  # DenseNet: the dense blocks and the transitions between them
    "MBConv", "FusedMBConv",  # EfficientNet (v1, v2)
    "InvertedResidual",  # MobileNetV2/V3, ShuffleNetV2, MNASNet's _InvertedResidual below, timm's
    "_InvertedResidual",
    "CNBlock", "ConvNeXtBlock",  # ConvNeXt (torchvision, timm)
    "ResBottleneckBlock",  # RegNet
    "EncoderBlock",  # torchvision's VisionTransformer
    "Fire",  # SqueezeNet
    "InceptionA", "InceptionB", "InceptionC", "InceptionD", "InceptionE", "Inception",  # Inception v3, GoogLeNet
    "SwinTransformerBlock", "SwinTransformerBlockV2",  # Swin
    "MaxVitBlock",  # MaxViT
    "DepthwiseSeparableConv", "EdgeResidual",  # timm's EfficientNet family
})

#: Blocks whose class name is too common to trust alone: (module path prefix, class name).
QUALIFIED_BLOCKS = frozenset({
    ("timm.models", "Block"),  # timm's ViT, DeiT, BEiT ... transformer blocks
    ("timm.layers", "Block"),
})


def is_block(module: nn.Module) -> bool:
    """Whether ``module`` is one block of a stock architecture (:data:`BLOCK_TYPES`)."""
    name = type(module).__name__
    if name in BLOCK_TYPES:
        return True
    where = type(module).__module__
    return any(where.startswith(prefix) and name == cls for prefix, cls in QUALIFIED_BLOCKS)


def blocks(model: nn.Module) -> list[str]:
    """Qualified names of the outermost blocks of ``model`` (a block inside a block is not listed)."""
    found: list[str] = []
    for name, module in model.named_modules():
        if name and is_block(module) and not any(name.startswith(b + ".") for b in found):
            found.append(name)
    return found


def block_of(site_module: str, block_names: Sequence[str]) -> str | None:
    """The outermost block that holds a leaf module, if any."""
    return next((b for b in block_names if site_module == b or site_module.startswith(b + ".")), None)


def default_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """The model's layers as a person would name them: its blocks, and the post-activation output
    of every conv and dense layer outside a block, but the last (the classes).

    Blocks (:data:`BLOCK_TYPES`: ResNet blocks, DenseNet dense blocks and transitions,
    EfficientNet/MobileNet inverted residuals, ConvNeXt and RegNet blocks, ViT encoder blocks
    ...) are captured as a whole: their output. Outside blocks (a stem, a classifier's hidden
    layers, and every layer of a model without blocks, such as the reference CNN or VGG), for
    each ``Conv1d/2d/3d`` or ``Linear`` call in execution order the activation module that runs
    next, with only normalisation layers between, is taken (ReLU, GELU, ...). A layer whose
    output meets no activation that way is not a post-activation value and is left out. A model
    with no activation modules at all (it applies ``F.relu`` functionally) gets the layers
    themselves. The final ``Linear`` produces the class scores and is not a hidden layer. Sites
    are per call (``relu#2``). A channels-last map made by a Linear (inside ConvNeXt's blocks)
    is never a default.

    A model that knows its own structure better names its hidden layers itself with a
    ``capture_layers()`` method returning site names.

    Raises
    ------
    IngestError
        Nothing to capture; the message lists the layers that could be named.
    """
    own = getattr(model, "capture_layers", None)
    if callable(own):
        return list(own())
    sites = list_sites(model, example)
    modules = dict(model.named_modules())
    block_names = blocks(model)
    weighted = [i for i, s in enumerate(sites) if isinstance(modules[s.module], _WEIGHTED)]
    if not weighted:
        raise IngestError("the model has no Conv or Linear layer to capture; pass --layers (`deepatlas inspect` lists them)")
    functional = not any(isinstance(modules[s.module], ACTIVATIONS) for s in sites)
    last_of_block: dict[str, int] = {}
    for s in sites:
        b = block_of(s.module, block_names)
        if b is not None:
            last_of_block[b] = s.order
    picks: list[tuple[int, str]] = [(order, b) for b, order in last_of_block.items() if order < sites[weighted[-1]].order]
    for i in weighted[:-1]:
        if block_of(sites[i].module, block_names) is not None:
            continue
        pick = sites[i].name if functional else None
        j = i + 1
        while not functional and j < len(sites) and isinstance(modules[sites[j].module], NORMS):
            j += 1
        if not functional and j < len(sites) and isinstance(modules[sites[j].module], ACTIVATIONS):
            pick = sites[j].name
        if pick is None or any(p == pick for _, p in picks) or block_of(_site(sites, pick).module, block_names):
            continue
        if unit_kind(sites, _site(sites, pick), modules) != CHANNELS_LAST:
            picks.append((_site(sites, pick).order, pick))
    if not picks:
        choices = [s.name for s in sites if isinstance(modules[s.module], _WEIGHTED)][:-1] + block_names
        raise IngestError("no conv or dense layer of the model is followed by an activation; pass --layers, e.g. "
                          + ", ".join(choices[:12]) + (" ..." if len(choices) > 12 else ""))
    return [name for _, name in sorted(picks)]


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
        containers: dict[str, list[Site]] = {}
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
                containers[n] = inner
                continue
            valid = ", ".join(s.name for s in sites)
            raise IngestError(f"unknown layer {n!r}; the model's layers are: {valid}")
        chosen += self._container_sites(containers, example)
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

    def _container_sites(self, containers: dict[str, list[Site]], example: torch.Tensor) -> list[Site]:
        """Non-leaf modules (whole blocks): their outputs, each placed where its last leaf runs
        (one forward pass for all of them)."""
        if not containers:
            return []
        shapes: dict[str, tuple[int, ...]] = {}

        def grab(name: str) -> Callable[[nn.Module, object, object], None]:
            def hook(_m: nn.Module, _i: object, out: object) -> None:
                shapes[name] = tuple(out.shape) if isinstance(out, torch.Tensor) else ()

            return hook

        try:
            with hooks(self.model, forward={n: grab(n) for n in containers}), torch.no_grad():
                self.model(example)
        except UsageError as exc:
            raise IngestError(str(exc)) from None
        return [Site(n, n, 1, 1, type(self.model.get_submodule(n)).__name__, shapes.get(n, ()), inner[-1].order)
                for n, inner in containers.items()]

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
