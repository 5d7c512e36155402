"""Prediction gradients (Lo, "Querying deep neural networks with gradients").

PG(a) = d y_c / d a for an element a (a pixel, or one position of a unit's output). Here y is
the *logit* of class c by default: the softmax probability's gradient vanishes wherever the
model is confident (p ~ 1 or ~ 0), which would rank units by the model's uncertainty rather
than by what they contribute; ``output="prob"`` is offered for the other reading.

Aggregates (the thesis' class-level PG): PG averaged over the samples of class c; a dense unit's
score is that average (signed); a conv filter's score is the Frobenius norm of its averaged
PG map (non-negative).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from deepatlas.data.base import ImageSet
from deepatlas.errors import UsageError
from deepatlas.explain._hooks import capture_outputs

__all__ = ["OUTPUTS", "PredictionGradients", "unit_scores"]

OUTPUTS = ("logit", "prob")


class PredictionGradients:
    """d y_target / d (input or a layer's output), per sample, captum-style.

    Parameters
    ----------
    model : nn.Module
        Returns logits.
    output : {"logit", "prob"}, default "logit"

    Examples
    --------
    >>> import torch
    >>> from deepatlas.models import FashionCNN
    >>> _ = torch.manual_seed(0)
    >>> model = FashionCNN(1, 10, (4, 8, 8), 16, 28).eval()
    >>> x = torch.rand(6, 1, 28, 28)
    >>> PredictionGradients(model).attribute(x, target=3, layer="relu4").shape
    torch.Size([6, 16])

    References
    ----------
    Lo, H. Z. (2016), "Querying Deep Neural Networks with Gradients", M.S. thesis, University of
    Massachusetts Boston.
    """

    def __init__(self, model: nn.Module, *, output: str = "logit") -> None:
        if output not in OUTPUTS:
            raise UsageError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.model = model
        self.output = output

    def attribute(self, inputs: torch.Tensor, target: int | torch.Tensor, layer: str | None = None) -> torch.Tensor:
        return self.attribute_layers(inputs, target, [layer])[0]

    def attribute_layers(self, inputs: torch.Tensor, target: int | torch.Tensor, layers: Sequence[str | None]) -> list[torch.Tensor]:
        self.model.eval()
        x = inputs.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            with capture_outputs(self.model, [n for n in layers if n is not None]) as captured:
                out = self.model(x)
            if self.output == "prob":
                out = out.softmax(1)
            if isinstance(target, int):
                if not 0 <= target < out.shape[1]:
                    raise UsageError(f"target {target} is not an output node (0..{out.shape[1] - 1})")
                y = out[:, target].sum()
            else:
                y = out.gather(1, target.view(-1, 1).to(out.device)).sum()
            wrt = [x if n is None else captured[n] for n in layers]
            grads = torch.autograd.grad(y, wrt, allow_unused=True)
        return [torch.zeros_like(w) if g is None else g.detach() for w, g in zip(wrt, grads, strict=True)]


def units_first(maps: torch.Tensor, kind: str = "conv") -> torch.Tensor:
    """(n, units, *positions) from a layer's (n, ...) maps, as a view: a token layer's (n, T, F)
    becomes (n, F, T), its units being the features (see :func:`deepatlas.ingest.capture.unit_kind`);
    conv and dense maps already have the units on axis 1. Writes to the view reach ``maps``."""
    return maps.movedim(-1, 1) if kind == "tokens" else maps


def unit_scores(mean_maps: torch.Tensor, kind: str = "conv") -> torch.Tensor:
    """(n_classes, units, *spatial) averaged PG -> (n_classes, units) scores.

    Dense: the averaged PG itself. Conv: the Frobenius norm of the averaged PG map. Tokens
    (``kind="tokens"``, maps (n_classes, T, F)): per feature, the norm over the tokens.
    """
    mean_maps = units_first(mean_maps, kind)
    if mean_maps.ndim == 2:
        return mean_maps
    return mean_maps.flatten(2).norm(dim=2)


def class_mean_maps(
    attribute: Callable[[torch.Tensor, torch.Tensor, list[str | None]], list[torch.Tensor]],
    data: ImageSet,
    layers: Sequence[str],
    *,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    per_class: int | None = 100,
    batch_size: int = 200,
    device: str | torch.device = "cpu",
    progress: Callable[[int], None] | None = None,
    classes: Sequence[int] | None = None,
    reduce: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
    shard: tuple[int, int] | None = None,
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """For each class c, the mean over (up to ``per_class``) images of class c of
    ``attribute(x, c)`` at each layer: {layer: (n_classes, units, *spatial)}, and the counts.

    The images stream from ``data`` (only the chosen ones are read). Classes are done one at a
    time; ``reduce(layer, mean_map)`` turns a class's mean map into what is kept (say, one score
    per unit), so memory holds one class's maps, never n_classes of them. ``classes``: only
    those classes (the other rows stay 0). ``shard`` (rank, world) and ``all_reduce`` (a sum
    over processes) let torch.distributed processes split each class's images.
    """
    device = torch.device(device)
    prep = normalize or (lambda t: t)
    subset = data.subset(per_class=per_class) if per_class else data
    n_classes = len(data.class_names)
    todo = range(n_classes) if classes is None else classes
    out: dict[str, torch.Tensor] = {}
    counts = torch.zeros(n_classes, dtype=torch.float64)
    labels = subset.labels
    for c in todo:
        positions = torch.nonzero(labels == c).flatten()
        one = subset.subset(positions=positions)
        sums: dict[str, torch.Tensor] = {}
        seen = torch.zeros((), dtype=torch.float64, device=device)
        for batch in one.batches(batch_size, device=device, shard=shard):
            x = prep(batch.images)
            target = torch.full((len(x),), c, dtype=torch.long, device=device)
            outs = attribute(x, target, list(layers))
            for name, g in zip(layers, outs, strict=True):
                total = g.to(torch.float64).sum(0)
                sums[name] = sums[name] + total if name in sums else total
            seen += len(x)
            if progress is not None:
                progress(len(x))
        if all_reduce is not None:
            all_reduce(seen)
            for name in layers:
                if name not in sums:  # this process had none of the class's images
                    sums[name] = _zeros_like_layer(attribute, data, layers, name, prep, device)
                all_reduce(sums[name])
        counts[c] = float(seen)
        for name, total in sums.items():
            mean = (total / max(1.0, float(seen))).cpu()
            kept = reduce(name, mean) if reduce is not None else mean
            if name not in out:
                out[name] = torch.zeros((n_classes, *kept.shape), dtype=kept.dtype)
            out[name][c] = kept
    return out, counts


def _zeros_like_layer(attribute: Callable[[torch.Tensor, torch.Tensor, list[str | None]], list[torch.Tensor]], data: ImageSet,
                      layers: Sequence[str], name: str, prep: Callable[[torch.Tensor], torch.Tensor],
                      device: torch.device) -> torch.Tensor:
    """Zeros of one image's attribution shape at ``name`` (a process without images of a class
    still joins the sum)."""
    x = prep(data.take([0]).to(device))
    g = attribute(x, torch.zeros(1, dtype=torch.long, device=device), [name])[0]
    return torch.zeros(g.shape[1:], dtype=torch.float64, device=device)
