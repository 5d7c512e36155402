"""Class-level summaries of the per-sample attributions, for the graph's edges.

- :func:`class_gradient_scores`   GRADIENT neuron -> class: PG averaged over the class's
                                  samples; dense: the average, conv: Frobenius norm of the map
- :func:`class_influence_scores`  INFLUENCES neuron -> class: the unit's influential score on
                                  the class, averaged over the class's samples; a conv filter
                                  sums its positions
- :func:`layer_influence`         INFLUENCES neuron -> neuron between consecutive captured
                                  layers, averaged over samples, filter pairs summed over positions
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from deepatlas.data.base import ImageSet
from deepatlas.explain.gradients import (
    PredictionGradients,
    class_mean_maps,
    unit_scores,
    units_first,
)
from deepatlas.explain.influence import InfluentialScores

__all__ = ["between_subset", "between_sweeps", "class_gradient_scores", "class_influence_scores", "layer_influence"]

Normalize = Callable[[torch.Tensor], torch.Tensor] | None


def class_gradient_scores(model: nn.Module, data: ImageSet, layers: Sequence[str], *, normalize: Normalize = None,
                          per_class: int | None = 100, device: str | torch.device = "cpu",
                          progress: Callable[[int], None] | None = None,
                          kinds: Mapping[str, str] | None = None, batch_size: int = 200,
                          classes: Sequence[int] | None = None, shard: tuple[int, int] | None = None,
                          all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """{layer: (n_classes, units)} prediction-gradient scores (Lo). ``kinds``: {layer: unit
    kind} (see :class:`deepatlas.ingest.capture.LayerSpec`); a "tokens" layer's units are its
    features, not its token positions. Each class's mean PG map is reduced to its unit scores
    as soon as it is complete. ``classes``, ``shard``, ``all_reduce``: see
    :func:`deepatlas.explain.gradients.class_mean_maps`."""
    pg = PredictionGradients(model)
    kinds = kinds or {}
    maps, _ = class_mean_maps(pg.attribute_layers, data, layers, normalize=normalize, per_class=per_class,
                              device=device, progress=progress, batch_size=batch_size, classes=classes, shard=shard,
                              all_reduce=all_reduce,
                              reduce=lambda n, m: unit_scores(m[None], kinds.get(n, "conv"))[0].float())
    return maps


def class_influence_scores(model: nn.Module, data: ImageSet, layers: Sequence[str], *, normalize: Normalize = None,
                           per_class: int | None = 100, device: str | torch.device = "cpu",
                           progress: Callable[[int], None] | None = None,
                           kinds: Mapping[str, str] | None = None, batch_size: int = 200,
                           classes: Sequence[int] | None = None, shard: tuple[int, int] | None = None,
                           all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """{layer: (n_classes, units)} mean influential score of each unit on each class (summed
    over its positions; ``kinds`` and the rest as in :func:`class_gradient_scores`)."""
    inf = InfluentialScores(model)
    kinds = kinds or {}

    def per_unit(name: str, m: torch.Tensor) -> torch.Tensor:
        m = units_first(m[None], kinds.get(name, "conv"))[0]
        return (m.flatten(1).sum(1) if m.ndim > 1 else m).float()

    maps, _ = class_mean_maps(inf.attribute_layers, data, layers, normalize=normalize, per_class=per_class,
                              device=device, progress=progress, batch_size=batch_size, classes=classes, shard=shard,
                              all_reduce=all_reduce, reduce=per_unit)
    return maps


def between_sweeps(model: nn.Module, example: torch.Tensor, layers: Sequence[str], sizes: Sequence[int]) -> int:
    """Backward sweeps per batch that :func:`layer_influence` takes over ``layers`` (with
    ``sizes`` units each): one for a pair with one weighted layer between
    (:meth:`InfluentialScores.one_sweep`), one per unit of the upper layer otherwise."""
    inf = InfluentialScores(model)
    return sum(1 if inf.one_sweep(example, lower, upper) else n_up
               for (lower, upper), n_up in zip(itertools.pairwise(layers), sizes[1:], strict=True))


def between_subset(data: ImageSet, samples: int) -> ImageSet:
    """The images neuron->neuron influence is averaged over: the first ``samples // classes``
    (at least 1) of each class."""
    return data.subset(per_class=max(1, samples // len(data.class_names)))


def layer_influence(model: nn.Module, data: ImageSet, layers: Sequence[str], *, normalize: Normalize = None,
                    samples: int = 200, batch_size: int = 100, device: str | torch.device = "cpu",
                    progress: Callable[[int], None] | None = None, shard: tuple[int, int] | None = None,
                    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[tuple[str, str], torch.Tensor]:
    """{(lower, upper): (units_lower, units_upper)} for each consecutive pair of ``layers``,
    averaged over the images of :func:`between_subset` (streamed; ``shard`` and ``all_reduce``
    as in :func:`class_gradient_scores`)."""
    device = torch.device(device)
    prep = normalize or (lambda t: t)
    subset = between_subset(data, samples)
    inf = InfluentialScores(model)
    out: dict[tuple[str, str], torch.Tensor] = {}
    for lower, upper in itertools.pairwise(layers):
        total: torch.Tensor | None = None
        for batch in subset.batches(batch_size, device=device, shard=shard):
            j = inf.between(prep(batch.images), lower, upper, progress=progress).to(torch.float64).sum(0)
            total = j if total is None else total + j
        if total is None:  # this process had no image (more processes than images)
            x = prep(subset.take([0]).to(device))
            total = torch.zeros_like(inf.between(x, lower, upper).to(torch.float64).sum(0))
        if all_reduce is not None:
            all_reduce(total)
        out[(lower, upper)] = (total / len(subset)).float().cpu()
    return out
