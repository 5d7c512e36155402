"""Interventions on units: knock a set out, or drive a set alone, and see what the model predicts.

A *unit* is a dense neuron, a whole conv filter (channel) of a captured layer's output, or one
feature of a token layer (every token's entry for that feature). Layers are hook sites
(``layer1.0.relu#2`` for the second call of a shared module, see :mod:`deepatlas.models.sites`).

Knockout (``mode="knockout"``) replaces the chosen units' output and leaves the rest alone:
  - ``value="zero"``: set to 0 (for a post-ReLU unit, "silent");
  - ``value="mean"``: set to the unit's data-set mean output (for a conv filter, its mean
    activation *map*, position by position), which removes the unit's information while
    keeping the input the next layer expects on average (mean ablation).
Activate-only (``mode="activate"``) sets every *other* unit of the same layer to 0 and the
chosen ones to a fixed value, so the layer's output no longer depends on the input:
  - ``value="class-mean"``: the unit's mean output over the images of the class in question;
  - ``value="max"``: the unit's maximum spatial-mean output over the data set (a conv map is
    scaled so its spatial mean equals that maximum).
This is the co-activation paper's "activate only the top-k neurons of a class" experiment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from deepatlas.data.base import ImageSet, Stream
from deepatlas.errors import UsageError
from deepatlas.explain._hooks import capture_outputs
from deepatlas.explain.gradients import units_first
from deepatlas.models.sites import hooks, split_site

__all__ = ["Intervention", "UnitSet", "UnitStats", "parse_units", "predictions", "unit_statistics"]

KNOCKOUT_VALUES = ("zero", "mean")
ACTIVATE_VALUES = ("class-mean", "max")

#: layer name -> unit indices
UnitSet = Mapping[str, Sequence[int]]


def parse_units(text: str) -> dict[str, list[int]]:
    """``"relu4:3,relu4:7,relu2:1"`` -> ``{"relu4": [3, 7], "relu2": [1]}``."""
    out: dict[str, list[int]] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        layer, sep, index = item.rpartition(":")
        if not sep or not layer or not index.isdigit():
            raise UsageError(f"bad unit {item!r}; write layer:index, e.g. relu4:12")
        out.setdefault(layer, []).append(int(index))
    if not out:
        raise UsageError("the unit list is empty")
    return out


@dataclass
class UnitStats:
    """Per layer: the data-set mean output, per-class mean outputs, and the max spatial mean.

    Attributes
    ----------
    mean : dict layer -> Tensor (units, *spatial)
    class_mean : dict layer -> Tensor (n_classes, units, *spatial)
    max : dict layer -> Tensor (units,)
    """

    mean: dict[str, torch.Tensor]
    class_mean: dict[str, torch.Tensor]
    max: dict[str, torch.Tensor]


@torch.no_grad()
def unit_statistics(model: nn.Module, data: ImageSet, layers: Sequence[str], *,
                    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    batch_size: int = 500, device: str | torch.device = "cpu",
                    kinds: Mapping[str, str] | None = None) -> UnitStats:
    """One pass over ``data``: what :class:`Intervention` needs for "mean", "class-mean", "max".

    ``kinds`` maps a token layer's name to ``"tokens"`` (units on the last axis); other layers
    have their units on axis 1. Statistics are stored with the unit axis first."""
    kinds = kinds or {}
    device = torch.device(device)
    model = model.to(device).eval()
    prep = normalize or (lambda t: t)
    n_classes = len(data.class_names)
    sums: dict[str, torch.Tensor] = {}
    csums: dict[str, torch.Tensor] = {}
    maxes: dict[str, torch.Tensor] = {}
    counts = torch.zeros(n_classes, device=device)
    with capture_outputs(model, layers) as store:
        for batch in data.batches(batch_size, device=device):
            x, y = prep(batch.images), batch.labels
            model(x)
            onehot = torch.nn.functional.one_hot(y, n_classes).to(torch.float64)
            counts += onehot.sum(0).to(counts.dtype)
            for n in layers:
                out = units_first(store[n], kinds.get(n, "conv")).to(torch.float64)
                flat = out.flatten(1)
                sums[n] = sums.get(n, torch.zeros_like(flat[0])) + flat.sum(0)
                csums[n] = csums.get(n, torch.zeros(n_classes, flat.shape[1], dtype=torch.float64, device=device)) + onehot.T @ flat
                spatial = out.flatten(2).mean(2) if out.ndim > 2 else out
                batch_max = spatial.max(0).values
                maxes[n] = torch.maximum(maxes[n], batch_max) if n in maxes else batch_max
    shapes = {n: units_first(store[n], kinds.get(n, "conv")).shape[1:] for n in layers}
    return UnitStats(
        mean={n: (sums[n] / len(data)).reshape(shapes[n]).float() for n in layers},
        class_mean={n: (csums[n] / counts.clamp_min(1)[:, None].to(torch.float64)).reshape(n_classes, *shapes[n]).float() for n in layers},
        max={n: maxes[n].float() for n in layers},
    )


class Intervention:
    """Run a model with some units knocked out or driven alone.

    Parameters
    ----------
    model : nn.Module
    stats : UnitStats, optional
        Needed for ``value="mean"``, ``"class-mean"`` and ``"max"``.

    Examples
    --------
    >>> import torch
    >>> from deepatlas.models import FashionCNN
    >>> _ = torch.manual_seed(0)
    >>> model = FashionCNN(1, 10, (4, 8, 8), 16, 28).eval()
    >>> x = torch.rand(6, 1, 28, 28)
    >>> iv = Intervention(model)
    >>> with iv.knockout({"relu4": [3, 7]}, value="zero"):
    ...     preds = model(x).argmax(1)
    >>> preds.shape, iv.predict(x, {"relu4": [3, 7]}).equal(preds)
    (torch.Size([6]), True)
    """

    def __init__(self, model: nn.Module, stats: UnitStats | None = None, *,
                 kinds: Mapping[str, str] | None = None) -> None:
        self.model = model
        self.stats = stats
        self.kinds = dict(kinds or {})
        self._modules = dict(model.named_modules())

    def _check(self, units: UnitSet) -> dict[str, torch.Tensor]:
        if not units or not any(len(v) for v in units.values()):
            raise UsageError("the selection is empty: nothing to intervene on")
        out = {}
        for layer, idx in units.items():
            if split_site(layer)[0] not in self._modules or not layer:
                raise UsageError(f"unknown layer {layer!r}")
            t = torch.as_tensor(list(idx), dtype=torch.long)
            if len(set(t.tolist())) != len(t):
                raise UsageError(f"layer {layer}: a unit is listed twice")
            out[layer] = t
        return out

    def _stat(self, kind: str, layer: str) -> torch.Tensor:
        if self.stats is None:
            raise UsageError(f"value {kind!r} needs unit statistics (unit_statistics(...))")
        return getattr(self.stats, "max" if kind == "max" else kind)[layer]

    @contextmanager
    def knockout(self, units: UnitSet, *, value: str = "zero") -> Iterator[None]:
        """Inside the block, the chosen units output 0 or their data-set mean."""
        if value not in KNOCKOUT_VALUES:
            raise UsageError(f"knockout value must be one of {KNOCKOUT_VALUES}, got {value!r}")
        checked = self._check(units)

        def make(layer: str, idx: torch.Tensor):
            def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
                out = out.clone()
                units = units_first(out, self.kinds.get(layer, "conv"))  # a view: writes reach out
                _bounds(layer, idx, units)
                i = idx.to(out.device)
                if value == "zero":
                    units[:, i] = 0
                else:
                    units[:, i] = self._stat("mean", layer).to(out.device, out.dtype)[i]
                return out

            return hook

        with self._hooks({layer: make(layer, idx) for layer, idx in checked.items()}):
            yield

    @contextmanager
    def activate_only(self, units: UnitSet, *, value: str = "class-mean", target: int | None = None) -> Iterator[None]:
        """Inside the block, each named layer outputs only the chosen units, at a fixed value."""
        if value not in ACTIVATE_VALUES:
            raise UsageError(f"activate value must be one of {ACTIVATE_VALUES}, got {value!r}")
        if value == "class-mean" and target is None:
            raise UsageError("value 'class-mean' needs the target class")
        checked = self._check(units)

        def make(layer: str, idx: torch.Tensor):
            def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
                result = torch.zeros_like(out)
                new = units_first(result, self.kinds.get(layer, "conv"))  # a view: writes reach result
                _bounds(layer, idx, new)
                i = idx.to(out.device)
                if value == "class-mean":
                    fill = self._stat("class_mean", layer)[target].to(out.device, out.dtype)[i]
                    new[:, i] = fill
                else:
                    top = self._stat("max", layer).to(out.device, out.dtype)[i]
                    if new.ndim > 2:
                        base = self._stat("mean", layer).to(out.device, out.dtype)[i]
                        spatial_mean = base.flatten(1).mean(1).clamp_min(1e-12)
                        shape = (-1,) + (1,) * (new.ndim - 2)
                        new[:, i] = base * (top / spatial_mean).view(shape)
                    else:
                        new[:, i] = top
                return result

            return hook

        with self._hooks({layer: make(layer, idx) for layer, idx in checked.items()}):
            yield

    @contextmanager
    def _hooks(self, forward: dict[str, Callable[..., Any]]) -> Iterator[None]:
        with hooks(self.model, forward=forward):
            yield

    @torch.no_grad()
    def predict(
        self,
        inputs: torch.Tensor | Stream,
        units: UnitSet,
        *,
        mode: str = "knockout",
        value: str = "zero",
        target: int | None = None,
        batch_size: int = 1000,
    ) -> torch.Tensor:
        """Predicted classes (N,) under the intervention; the model is unchanged afterwards.

        ``inputs``: a tensor of prepared images, or a :class:`~deepatlas.data.base.Stream` (the
        images are then read batch by batch)."""
        if mode not in ("knockout", "activate"):
            raise UsageError(f"mode must be knockout or activate, got {mode!r}")
        self.model.eval()
        ctx = self.knockout(units, value=value) if mode == "knockout" else self.activate_only(units, value=value, target=target)
        with ctx:
            return predictions(self.model, inputs, batch_size=batch_size)


@torch.no_grad()
def predictions(model: nn.Module, inputs: torch.Tensor | Stream, *, batch_size: int = 1000) -> torch.Tensor:
    """The model's predicted class (N,) for a tensor of prepared images or a Stream, on the CPU."""
    if isinstance(inputs, torch.Tensor):
        batches: Iterable[torch.Tensor] = (inputs[s : s + batch_size] for s in range(0, len(inputs), batch_size))
    else:
        batches = (x for x, _ in inputs)
    preds = [model(x).argmax(1).cpu() for x in batches]
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def _bounds(layer: str, idx: torch.Tensor, out: torch.Tensor) -> None:
    n = out.shape[1]
    if len(idx) and (int(idx.max()) >= n or int(idx.min()) < 0):
        raise UsageError(f"layer {layer} has units 0..{n - 1}; got {idx.tolist()}")
