"""Experiments fed back into the model, each recorded as an Experiment node on the run.

Each takes a :class:`~deepatlas.workspace.Workspace` first. The model is the run's own (found
from its Model node, verified by the weights' sha256) unless the Workspace's model names
another file with the same weights; the data is the run's own data set, split and number of
images. Each returns a :class:`~deepatlas.workspace.Result`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from deepatlas.data.base import ImageSet, Stream
from deepatlas.db.experiments import (
    RANKINGS,
    class_ranking,
    community_classes,
    community_units,
    dense_layers,
    layer_size,
    shared_units,
    unit_layers,
    write_experiment,
)
from deepatlas.db.graph import Graph
from deepatlas.db.queries import class_names, resolve_class
from deepatlas.db.runs import RunInfo
from deepatlas.errors import UsageError
from deepatlas.explain.experiments import (
    Unit,
    activate_only_sweep,
    confusion,
    error_rates,
    group_units,
    knockout_curve,
    pg_ranking,
    random_orders,
)
from deepatlas.explain.interventions import Intervention, UnitStats, predictions, unit_statistics
from deepatlas.models.checkpoint import Checkpoint
from deepatlas.rows import class_key
from deepatlas.workspace import Result, Workspace, optional

__all__ = [
    "ActivateResult",
    "CommunityKnockoutResult",
    "KnockoutResult",
    "SharedKnockoutResult",
    "experiment_activate",
    "experiment_community",
    "experiment_knockout",
    "experiment_shared",
]


@dataclass
class _Context:
    """The run, its model on the device, and its images as the model sees them (a Stream:
    normalised batches on the device, read again for every pass; never all at once)."""

    run: RunInfo
    ckpt: Checkpoint
    data: ImageSet
    inputs: Stream
    labels: torch.Tensor
    device: torch.device
    classes: list[str]


def _context(ws: Workspace) -> _Context:
    info = ws.run_info()
    ckpt = ws.run_checkpoint()  # any kind of model; a moved file is found by its hash
    classes = class_names(ws.graph, info)
    if not ckpt.meta.get("class_names"):
        ckpt.meta["class_names"] = list(classes)
    data = ws.run_images()
    ckpt.model.to(ws.device).eval()
    return _Context(info, ckpt, data, Stream(data, ckpt.normalize, device=ws.device), data.labels, ws.device, classes)


#: What a knocked-out unit is set to, and what activate-only drives the kept units to.
KNOCKOUT_VALUES = ("zero", "mean")
ACTIVATE_VALUES = ("class-mean", "max")


def _check_value(value: str, allowed: tuple[str, ...]) -> None:
    """Checked before the server or the model is touched (the Workspace opens them lazily)."""
    if value not in allowed:
        raise UsageError(f"value must be one of {', '.join(allowed)}, got {value!r}")


def _default_layer(graph: Graph, ctx: _Context, layer: str | None) -> str:
    """The first dense layer after the convs, as in the co-activation paper; a run without one
    (a stock ResNet, DenseNet, ViT: blocks up to the classifier) takes its last captured layer,
    the representation the classifier reads."""
    if layer is not None:
        return layer
    dense = dense_layers(graph, ctx.run)
    if dense:
        return dense[0]
    captured = unit_layers(graph, ctx.run)
    if not captured:
        raise UsageError(f"run {ctx.run.name} has no captured layer; pass --layer")
    return str(captured[-1]["name"])


def _class_key(ctx: _Context, name: str) -> str:
    return class_key(ctx.run.key, ctx.classes.index(name))


def _stats(ctx: _Context, layers: Sequence[str]) -> UnitStats:
    return unit_statistics(ctx.ckpt.model, ctx.data, list(layers), normalize=ctx.ckpt.normalize, device=ctx.device)


@dataclass
class KnockoutResult(Result):
    """Error curves as the top-k, bottom-k and random-k units of a class are knocked out."""

    run: str
    class_name: str = field(metadata={"key": "class"})
    layer: str
    layers_ranked: list[str]
    by: str
    units_ranked: int
    ranking: list[dict[str, Any]]
    top: dict[str, list[float]]
    bottom: dict[str, list[float]]
    random: dict[str, list[float]]
    figure: str | None = optional()
    experiment: str | None = optional()


@dataclass
class ActivateResult(Result):
    """For each k, whether driving only a class's top-k units makes the model predict it."""

    run: str
    layer: str
    by: str
    value: str
    ks: list[int]
    classes: list[dict[str, Any]]
    fraction_correct: list[float]
    figure: str | None = optional()
    experiment: str | None = optional()


@dataclass
class CommunityKnockoutResult(Result):
    """Error per class before and after a community's neurons are knocked out."""

    run: str
    community: int
    community_classes: list[str]
    units: int
    error_before: float
    error_after: float
    per_class: list[dict[str, Any]]
    experiment: str | None = optional()


@dataclass
class SharedKnockoutResult(Result):
    """Two classes' mutual mistakes before and after the neurons they share are knocked out."""

    run: str
    a: str
    b: str
    shared_units: list[str]
    mutual_mistakes_before: int
    mutual_mistakes_after: int
    a_as_b: list[int]
    b_as_a: list[int]
    class_error: dict[str, list[float]]
    random_same_size_mutual_mistakes: dict[str, Any]
    experiment: str | None = optional()


def experiment_knockout(
    ws: Workspace,
    class_name: str,
    *,
    layer: str | None = None,
    by: str = "pg",
    ks: Sequence[int] = (0, 1, 2, 4, 8, 16, 32, 64),
    value: str = "zero",
    seeds: int = 5,
    output: str = "prob",
    pg_images: int = 500,
    figure: bool = True,
    record: bool = True,
) -> KnockoutResult:
    """Knockout curves for one class: strongest-k vs weakest-k vs random-k units.

    ``by="pg"`` (the default, the thesis' experiment): the units are the conv filters of *all*
    captured conv layers (``layer="all"``, the default here) or of one ``layer``, ranked by the
    L2 norm of their prediction gradient averaged over up to ``pg_images`` of the run's images
    of the class (``output``: y is the probability, the thesis', or the logit); computed from
    the model, not the graph. Strongest = largest norm, weakest = smallest norm.

    ``by="coactivation" | "influence" | "gradient"``: the units are ranked by their stored edge
    to the class (r, influential score, stored PG); top = highest score, bottom = lowest (the
    most negative for signed scores). Their default ``layer`` is the first dense layer (the
    co-activation paper's); ``layer="all"`` ranks every captured layer together.

    Random orders repeat with ``seeds`` seeds and report mean, std, min and max per k. Error
    is reported on the class and overall.

    References
    ----------
    Lo, H. Z. (2016), "Querying Deep Neural Networks with Gradients", M.S. thesis, University of
    Massachusetts Boston (knockout of the highest vs
    lowest scoring filters); Horta, V. A. C. & Mileo, A. (2019), "Towards Explaining Deep
    Neural Networks Through Graph Analysis", DEXA 2019 workshops, CCIS 1062, Springer,
    doi:10.1007/978-3-030-27684-3_20.
    """
    if seeds < 1:
        raise UsageError("seeds must be >= 1")
    if not ks or any(k < 0 for k in ks):
        raise UsageError(f"ks must be a non-empty list of k >= 0, got {list(ks)}")
    if by not in ("pg", *RANKINGS):
        raise UsageError(f"unknown ranking {by!r}; use pg, {', '.join(RANKINGS)}")
    if output not in ("prob", "logit"):
        raise UsageError(f"output must be prob or logit, got {output!r}")
    _check_value(value, KNOCKOUT_VALUES)
    graph, progress = ws.graph, ws.progress
    ctx = _context(ws)
    stored = resolve_class(graph, ctx.run, class_name)
    c = ctx.classes.index(stored)
    captured = unit_layers(graph, ctx.run)
    names = [row["name"] for row in captured]
    if layer is not None and layer != "all" and layer not in names:
        raise UsageError(f"layer {layer!r} is not a captured layer of run {ctx.run.name}; layers: {', '.join(names)}")
    if by == "pg":
        layer = layer or "all"
        ranked_layers = ([row["name"] for row in captured if row["kind"] == "conv"] or names) if layer == "all" else [layer]
        idx = torch.nonzero(ctx.labels == c).flatten()[:pg_images]
        ranking = pg_ranking(ctx.ckpt.model, ctx.inputs.subset(positions=idx), c, ranked_layers, output=output,
                             kinds={row["name"]: row["kind"] for row in captured})
    else:
        layer = _default_layer(graph, ctx, layer)
        ranked_layers = names if layer == "all" else [layer]
        ranking = class_ranking(graph, ctx.run, _class_key(ctx, stored), by=by, layer=None if layer == "all" else layer)
    units: list[Unit] = [(lay, idx) for lay, idx, _ in ranking]
    value_layers = sorted({lay for lay, _ in units})
    iv = Intervention(ctx.ckpt.model, _stats(ctx, value_layers) if value == "mean" else None)
    n_cls = len(ctx.classes)
    total = len(ks) * (2 + seeds)

    def tick(n: int) -> None:
        progress("knockout", n, total)

    top = knockout_curve(iv, ctx.inputs, ctx.labels, units, ks, n_classes=n_cls, value=value, progress=tick)
    bottom = knockout_curve(iv, ctx.inputs, ctx.labels, units[::-1], ks, n_classes=n_cls, value=value, progress=tick)
    rand = [knockout_curve(iv, ctx.inputs, ctx.labels, order, ks, n_classes=n_cls, value=value, progress=tick)
            for order in random_orders(units, range(seeds))]

    def curve(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
        return {"k": [r["k"] for r in rows], "class_error": [r["class_error"][c] for r in rows], "error": [r["error"] for r in rows]}

    rand_class = np.array([[r["class_error"][c] for r in rows] for rows in rand])
    rand_all = np.array([[r["error"] for r in rows] for rows in rand])
    result = KnockoutResult(
        run=ctx.run.name, class_name=stored, layer=layer, layers_ranked=ranked_layers, by=by, units_ranked=len(units),
        ranking=[{"unit": f"{lay}:{i}", "score": sc} for lay, i, sc in ranking],
        top=curve(top), bottom=curve(bottom),
        random={"k": [r["k"] for r in rand[0]], "class_error_mean": rand_class.mean(0).tolist(),
                "class_error_std": rand_class.std(0).tolist(), "class_error_min": rand_class.min(0).tolist(),
                "class_error_max": rand_class.max(0).tolist(), "error_mean": rand_all.mean(0).tolist(),
                "error_std": rand_all.std(0).tolist()},
    )
    params = {"class": stored, "layer": layer, "by": by, "ks": list(ks), "value": value, "seeds": seeds,
              **({"output": output, "pg_images": pg_images} if by == "pg" else {})}
    if figure:
        from deepatlas.report.experiments import knockout_figure

        result.figure = str(knockout_figure(result.to_json(), ctx.run.name, ws.out / f"knockout-{_safe(stored)}-{layer}.png"))
    if record:
        kmax = max(ks)
        result.experiment = write_experiment(graph, ctx.run, "knockout", params, result.to_json(), units[:kmax],
                                             [_class_key(ctx, stored)])
    return result


def experiment_activate(
    ws: Workspace,
    *,
    layer: str | None = None,
    by: str = "coactivation",
    ks: Sequence[int] = (1, 2, 3, 5, 7, 10, 15, 20, 30),
    value: str = "class-mean",
    figure: bool = True,
    record: bool = True,
) -> ActivateResult:
    """Activate only each class's top-k units of a layer; does the model predict that class?

    References
    ----------
    Horta, V. A. C. & Mileo, A. (2019), "Towards Explaining Deep Neural Networks Through Graph
    Analysis", DEXA 2019 workshops, CCIS 1062, Springer, doi:10.1007/978-3-030-27684-3_20.
    """
    ks = sorted(set(ks))
    if not ks or ks[0] < 1:
        raise UsageError(f"k must be >= 1, got {list(ks)}")
    _check_value(value, ACTIVATE_VALUES)
    if by not in RANKINGS:
        raise UsageError(f"unknown ranking {by!r}; use {', '.join(RANKINGS)}")
    graph, progress = ws.graph, ws.progress
    ctx = _context(ws)
    layer = _default_layer(graph, ctx, layer)
    rankings: list[list[Unit]] = []
    unranked: dict[str, str] = {}
    for name in ctx.classes:
        try:
            ranked = class_ranking(graph, ctx.run, _class_key(ctx, name), by=by, layer=layer)
        except UsageError as exc:  # a class with no edges: its output never varied over the run (dead)
            ranked, unranked[name] = [], str(exc)
        rankings.append([(lay, idx) for lay, idx, _ in ranked])
    if len(unranked) == len(ctx.classes):
        raise UsageError(f"{next(iter(unranked.values()))}: no class's output varied over the run's images (the model "
                         "gives every image the same scores), so no unit ranks for any class")
    iv = Intervention(ctx.ckpt.model, _stats(ctx, [layer]))
    sweep = activate_only_sweep(iv, ctx.inputs.take([0]), rankings, ks, value=value,
                                progress=lambda n: progress("activate", n, len(ctx.classes)))
    per_class = [
        {"class": name, "smallest_k": sweep["smallest_k"][c],
         "predicted": [ctx.classes[p] if p >= 0 else None for p in sweep["predicted"][c]],
         **({"not_ranked": "no edges to this class in the layer (its output was constant over the run's images)"}
            if name in unranked else {})}
        for c, name in enumerate(ctx.classes)
    ]
    result = ActivateResult(run=ctx.run.name, layer=layer, by=by, value=value, ks=ks, classes=per_class,
                            fraction_correct=sweep["fraction_correct"])
    if figure:
        from deepatlas.report.experiments import activate_figure

        result.figure = str(activate_figure(result.to_json(), ctx.run.name, ws.out / f"activate-{layer}.png"))
    if record:
        kmax = max(ks)
        targets = sorted({u for order in rankings for u in order[:kmax]})
        result.experiment = write_experiment(graph, ctx.run, "activate",
                                             {"layer": layer, "by": by, "ks": ks, "value": value}, result.to_json(), targets,
                                             [_class_key(ctx, n) for n in ctx.classes])
    return result


@torch.no_grad()
def _base_predictions(ctx: _Context) -> torch.Tensor:
    """The unmodified model's predictions on the run's images (CPU)."""
    net = ctx.ckpt.model
    return predictions(net, ctx.inputs)


def _knockout(ctx: _Context, units: list[Unit], value: str) -> Intervention:
    """An Intervention with the unit statistics ``value`` needs for the layers of ``units``."""
    layers = sorted({lay for lay, _ in units})
    return Intervention(ctx.ckpt.model, _stats(ctx, layers) if value == "mean" else None)


def experiment_community(ws: Workspace, community: int, *, value: str = "zero", record: bool = True) -> CommunityKnockoutResult:
    """Knock out every neuron of a Louvain community; error per class before and after."""
    _check_value(value, KNOCKOUT_VALUES)
    graph = ws.graph
    ctx = _context(ws)
    units = community_units(graph, ctx.run, community)
    base = _base_predictions(ctx)
    after = _knockout(ctx, units, value).predict(ctx.inputs, group_units(units), mode="knockout", value=value)
    n = len(ctx.classes)
    b_per, b_all = error_rates(base, ctx.labels, n)
    a_per, a_all = error_rates(after, ctx.labels, n)
    result = CommunityKnockoutResult(
        run=ctx.run.name, community=community, community_classes=community_classes(graph, ctx.run, community),
        units=len(units), error_before=b_all, error_after=a_all,
        per_class=[{"class": name, "error_before": b_per[i], "error_after": a_per[i], "change": a_per[i] - b_per[i]}
                   for i, name in enumerate(ctx.classes)],
    )
    if record:
        ck = [_class_key(ctx, name) for name in result.community_classes]
        result.experiment = write_experiment(graph, ctx.run, "community", {"community": community, "value": value},
                                             result.to_json(), units, ck)
    return result


def experiment_shared(ws: Workspace, a: str, b: str, *, value: str = "zero", seeds: int = 5,
                      record: bool = True) -> SharedKnockoutResult:
    """Knock out the neurons two classes share; their mutual mistakes before and after.

    A random set of the same size from the same layers (``seeds`` times) is the baseline.
    """
    _check_value(value, KNOCKOUT_VALUES)
    if a.strip().lower() == b.strip().lower():
        raise UsageError("give two different classes")
    graph = ws.graph
    ctx = _context(ws)
    sa, sb = resolve_class(graph, ctx.run, a), resolve_class(graph, ctx.run, b)
    if sa == sb:
        raise UsageError("give two different classes")
    ia, ib = ctx.classes.index(sa), ctx.classes.index(sb)
    units = shared_units(graph, ctx.run, _class_key(ctx, sa), _class_key(ctx, sb))
    if not units:
        raise UsageError(f"{sa} and {sb} share no neurons in their sets; nothing to knock out")
    n = len(ctx.classes)
    iv = _knockout(ctx, units, value)  # the random baselines draw from the same layers: one set of statistics
    base = _base_predictions(ctx)
    after = iv.predict(ctx.inputs, group_units(units), mode="knockout", value=value)
    cb, ca = confusion(base, ctx.labels, n), confusion(after, ctx.labels, n)

    def mutual(cm: np.ndarray) -> int:
        return int(cm[ia, ib] + cm[ib, ia])

    layers = sorted({lay for lay, _ in units})
    pool = [(lay, i) for lay in layers for i in range(layer_size(graph, ctx.run, lay))]
    rand = []
    for order in random_orders(pool, range(seeds)):
        pr = iv.predict(ctx.inputs, group_units(order[: len(units)]), mode="knockout", value=value)
        rand.append(mutual(confusion(pr, ctx.labels, n)))
    b_per, _ = error_rates(base, ctx.labels, n)
    a_per, _ = error_rates(after, ctx.labels, n)
    result = SharedKnockoutResult(
        run=ctx.run.name, a=sa, b=sb, shared_units=[f"{lay}:{i}" for lay, i in units],
        mutual_mistakes_before=mutual(cb), mutual_mistakes_after=mutual(ca),
        a_as_b=[int(cb[ia, ib]), int(ca[ia, ib])], b_as_a=[int(cb[ib, ia]), int(ca[ib, ia])],
        class_error={sa: [b_per[ia], a_per[ia]], sb: [b_per[ib], a_per[ib]]},
        random_same_size_mutual_mistakes={"mean": float(np.mean(rand)), "std": float(np.std(rand)), "values": rand},
    )
    if record:
        result.experiment = write_experiment(graph, ctx.run, "shared", {"a": sa, "b": sb, "value": value, "seeds": seeds},
                                             result.to_json(), units, [_class_key(ctx, sa), _class_key(ctx, sb)])
    return result


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name)
