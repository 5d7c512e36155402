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

__all__ = ["class_gradient_scores", "class_influence_scores", "layer_influence"]

Normalize = Callable[[torch.Tensor], torch.Tensor] | None


def class_gradient_scores(model: nn.Module, data: ImageSet, layers: Sequence[str], *, normalize: Normalize = None,
                          per_class: int | None = 100, device: str | torch.device = "cpu",
                          progress: Callable[[int], None] | None = None,
                          kinds: Mapping[str, str] | None = None) -> dict[str, torch.Tensor]:
    """{layer: (n_classes, units)} prediction-gradient scores (Lo). ``kinds``: {layer: unit
    kind} (see :class:`deepatlas.ingest.capture.LayerSpec`); a "tokens" layer's units are its
    features, not its token positions."""
    pg = PredictionGradients(model)
    maps, _ = class_mean_maps(pg.attribute_layers, data, layers, normalize=normalize, per_class=per_class,
                              device=device, progress=progress)
    return {n: unit_scores(m, (kinds or {}).get(n, "conv")).float() for n, m in maps.items()}


def class_influence_scores(model: nn.Module, data: ImageSet, layers: Sequence[str], *, normalize: Normalize = None,
                           per_class: int | None = 100, device: str | torch.device = "cpu",
                           progress: Callable[[int], None] | None = None,
                           kinds: Mapping[str, str] | None = None) -> dict[str, torch.Tensor]:
    """{layer: (n_classes, units)} mean influential score of each unit on each class (summed
    over its positions; ``kinds`` as in :func:`class_gradient_scores`)."""
    inf = InfluentialScores(model)
    maps, _ = class_mean_maps(inf.attribute_layers, data, layers, normalize=normalize, per_class=per_class,
                              device=device, progress=progress)
    out = {}
    for n, m in maps.items():
        m = units_first(m, (kinds or {}).get(n, "conv"))
        out[n] = (m.flatten(2).sum(2) if m.ndim > 2 else m).float()
    return out


def layer_influence(model: nn.Module, data: ImageSet, layers: Sequence[str], *, normalize: Normalize = None,
                    samples: int = 200, batch_size: int = 100, device: str | torch.device = "cpu",
                    progress: Callable[[int], None] | None = None) -> dict[tuple[str, str], torch.Tensor]:
    """{(lower, upper): (units_lower, units_upper)} for each consecutive pair of ``layers``,
    averaged over the first ``samples`` images (stratified by class)."""
    device = torch.device(device)
    prep = normalize or (lambda t: t)
    per_class = max(1, samples // len(data.class_names))
    subset = data.subset(per_class=per_class)
    inf = InfluentialScores(model)
    out: dict[tuple[str, str], torch.Tensor] = {}
    for lower, upper in itertools.pairwise(layers):
        total: torch.Tensor | None = None
        for s in range(0, len(subset), batch_size):
            x = prep(subset.images[s : s + batch_size]).to(device)
            j = inf.between(x, lower, upper, progress=progress).to(torch.float64).sum(0)
            total = j if total is None else total + j
        assert total is not None
        out[(lower, upper)] = (total / len(subset)).float().cpu()
    return out
