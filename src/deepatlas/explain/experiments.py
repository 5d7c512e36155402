"""The experiments of the co-activation and prediction-gradient papers, on an Intervention.

Pure functions of a model, tensors and unit orderings; nothing here reads the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from deepatlas.data.base import Stream
from deepatlas.errors import UsageError
from deepatlas.explain.interventions import Intervention, predictions

__all__ = ["activate_only_sweep", "error_rates", "group_units", "knockout_curve", "pg_ranking", "random_orders"]

Unit = tuple[str, int]


def group_units(units: Sequence[Unit]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for layer, index in units:
        out.setdefault(layer, []).append(int(index))
    return out


def pg_ranking(
    model: torch.nn.Module,
    inputs: torch.Tensor | Stream,
    target: int,
    layers: Sequence[str],
    *,
    output: str = "prob",
    batch_size: int = 200,
    kinds: Mapping[str, str] | None = None,
) -> list[tuple[str, int, float]]:
    """Units of ``layers`` ranked by the L2 norm of their class-averaged prediction gradient.

    For every unit (a conv filter: its whole map; a dense neuron: one value), PG = d y_target /
    d a averaged over ``inputs`` (the images of the class), and the score is the L2 (Frobenius)
    norm of that averaged map: one ranking across all the given layers, strongest first
    (ties: forward order of ``layers``, then index). The weakest units are the end of the list
    (smallest norm; norms are >= 0).

    Parameters
    ----------
    output : {"prob", "logit"}, default "prob"
        y is the class's softmax probability (the thesis' y) or its logit.
    kinds : mapping of str to str, optional
        {layer: unit kind}; a "tokens" layer's units are its features (norm over the tokens).

    References
    ----------
    Lo, H. Z. (2016), "Querying Deep Neural Networks with Gradients", M.S. thesis, University of
    Massachusetts Boston (knockout of the filters with
    the highest vs the lowest PG norm, across the network's conv layers).
    """
    from deepatlas.explain.gradients import PredictionGradients, unit_scores

    if len(inputs) == 0:
        raise UsageError("no images of the class to average the prediction gradients over")
    pg = PredictionGradients(model, output=output)
    sums: list[torch.Tensor] = []
    chunks: Iterable[torch.Tensor] = ((inputs[s : s + batch_size] for s in range(0, len(inputs), batch_size))
                                      if isinstance(inputs, torch.Tensor) else (x for x, _ in inputs))
    for x in chunks:
        grads = pg.attribute_layers(x, target, list(layers))
        batch = [g.to(torch.float64).sum(0) for g in grads]
        sums = batch if not sums else [a + b for a, b in zip(sums, batch, strict=True)]
    rows: list[tuple[str, int, float]] = []
    for name, total in zip(layers, sums, strict=True):
        mean = (total / len(inputs))[None]
        scores = unit_scores(mean, (kinds or {}).get(name, "conv"))[0].abs()  # conv: Frobenius norm of the mean map; dense: |mean PG|
        rows += [(name, i, float(v)) for i, v in enumerate(scores.cpu())]
    position = {name: i for i, name in enumerate(layers)}
    return sorted(rows, key=lambda r: (-r[2], position[r[0]], r[1]))


def error_rates(preds: torch.Tensor, labels: torch.Tensor, n_classes: int) -> tuple[list[float], float]:
    """Per-class error (1 - recall) and overall error."""
    wrong = (preds != labels).to(torch.float64)
    per = torch.zeros(n_classes, dtype=torch.float64).index_add_(0, labels, wrong)
    n = torch.bincount(labels, minlength=n_classes).to(torch.float64).clamp_min(1)
    return (per / n).tolist(), float(wrong.mean()) if len(wrong) else 0.0


def confusion(preds: torch.Tensor, labels: torch.Tensor, n_classes: int) -> np.ndarray:
    return torch.bincount(labels * n_classes + preds, minlength=n_classes**2).view(n_classes, n_classes).numpy()


def knockout_curve(
    iv: Intervention,
    inputs: torch.Tensor | Stream,
    labels: torch.Tensor,
    order: Sequence[Unit],
    ks: Sequence[int],
    *,
    n_classes: int,
    value: str = "zero",
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Knock out the first k units of ``order`` for each k; per-class and overall error.

    k = 0 is the unmodified model. A k beyond ``len(order)`` is clipped (and reported as such).
    ``inputs``: prepared images, or a :class:`~deepatlas.data.base.Stream` read once per k.
    """
    rows = []
    for k in ks:
        if k < 0:
            raise UsageError(f"k must be >= 0, got {k}")
        kk = min(k, len(order))
        if kk == 0:
            preds = predictions(iv.model, inputs)
        else:
            preds = iv.predict(inputs, group_units(order[:kk]), mode="knockout", value=value)
        per, overall = error_rates(preds, labels.cpu(), n_classes)
        rows.append({"k": kk, "class_error": per, "error": overall})
        if progress is not None:
            progress(1)
    return rows


def random_orders(units: Sequence[Unit], seeds: Sequence[int]) -> list[list[Unit]]:
    """One random permutation of ``units`` per seed (numpy's PCG64, seeded)."""
    out = []
    for seed in seeds:
        perm = np.random.default_rng(seed).permutation(len(units))
        out.append([units[i] for i in perm])
    return out


def activate_only_sweep(
    iv: Intervention,
    probe: torch.Tensor,
    rankings: Sequence[Sequence[Unit]],
    ks: Sequence[int],
    *,
    value: str = "class-mean",
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """For each class c and k: drive only c's top-k units; does the model then predict c?

    Parameters
    ----------
    probe : Tensor
        One input (1, C, H, W); the intervened layer's output does not depend on it.
    rankings : one unit ordering per class, best first.
    ks : increasing k values.

    Returns
    -------
    dict with ``predicted[c][i]`` (the class predicted for class c at ks[i]),
    ``smallest_k[c]`` (None if no k works), ``fraction_correct[i]`` per k.

    References
    ----------
    Horta, V. A. C. & Mileo, A. (2019), "Towards Explaining Deep Neural Networks Through Graph
    Analysis", DEXA 2019 workshops, CCIS 1062, Springer, doi:10.1007/978-3-030-27684-3_20 (activate only the top-k neurons of a class).
    """
    predicted: list[list[int]] = []
    for c, order in enumerate(rankings):
        row = []
        for k in ks:
            kk = min(k, len(order))
            if kk == 0:
                row.append(-1)
                continue
            pred = iv.predict(probe, group_units(order[:kk]), mode="activate", value=value, target=c)
            row.append(int(pred[0]))
        predicted.append(row)
        if progress is not None:
            progress(1)
    smallest = [next((k for k, p in zip(ks, row, strict=True) if p == c), None) for c, row in enumerate(predicted)]
    fraction = [sum(1 for c, row in enumerate(predicted) if row[i] == c) / len(rankings) for i in range(len(ks))]
    return {"ks": list(ks), "predicted": predicted, "smallest_k": smallest, "fraction_correct": fraction}
