"""Explanations of one image (input score maps, filter scores) and the graph's disagreements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from deepatlas.data.base import ImageSet, Stream
from deepatlas.db.queries import resolve_class, run_template
from deepatlas.errors import NotFoundError, UsageError
from deepatlas.explain.gradients import PredictionGradients
from deepatlas.explain.influence import InfluentialScores
from deepatlas.explain.interventions import predictions
from deepatlas.ingest.capture import ActivationRecorder, default_layers
from deepatlas.models.checkpoint import Checkpoint
from deepatlas.models.loading import complete_metadata
from deepatlas.workspace import Result, Workspace, optional

__all__ = [
    "METHODS",
    "STEP_SIZES",
    "DisagreementResult",
    "FeatureResult",
    "FiltersResult",
    "HeatmapResult",
    "PerturbResult",
    "SweepResult",
    "disagreement",
    "explain_feature",
    "explain_filters",
    "explain_heatmap",
    "explain_perturb",
    "perturb_sweep",
]

METHODS = ("influence", "gradient")


def _images(ws: Workspace) -> tuple[Checkpoint, ImageSet]:
    """The Workspace's model and images, the model's missing metadata taken from the images; with
    ``ws.run`` set, the run's own model and images (its data set, split and number of images)."""
    if ws.run is not None:
        return ws.run_checkpoint(), ws.run_images()
    ckpt, data = ws.checkpoint(), ws.images()
    complete_metadata(ckpt, data.input_shape, data.class_names, data.name)
    return ckpt, data


def _image(ws: Workspace, index: int) -> tuple[Checkpoint, ImageSet, torch.Tensor, int]:
    ckpt, data = _images(ws)
    split = data.split
    if not 0 <= index < len(data):
        raise UsageError(f"image index {index} is out of range: {data.name}/{split} has images 0..{len(data) - 1}")
    if tuple(ckpt.meta.get("input_shape", data.input_shape)) != data.input_shape:
        raise UsageError(f"the model expects {tuple(ckpt.meta['input_shape'])} images, {data.name} has {data.input_shape}")
    return ckpt, data, data.take([index]), int(data.labels[index])


@dataclass
class _OneImage:
    """A checkpoint's model on a device, and one image of a data set, raw and normalised."""

    ckpt: Checkpoint
    data: ImageSet
    raw: torch.Tensor
    label: int
    net: torch.nn.Module
    x: torch.Tensor
    device: torch.device


def _one_image(ws: Workspace, index: int) -> _OneImage:
    ckpt, data, raw, label = _image(ws, index)
    dev = ws.device
    net = ckpt.model.to(dev).eval()
    return _OneImage(ckpt, data, raw, label, net, ckpt.normalize(raw).to(dev), dev)


def _class_index(names: tuple[str, ...], name: str) -> int:
    for i, stored in enumerate(names):
        if stored.lower() == name.strip().lower():
            return i
    raise NotFoundError(f"no class {name!r}; classes: {', '.join(names)}")


@dataclass
class HeatmapResult(Result):
    """Input score maps of one image: the figure and each class's positive and negative sums."""

    image: int
    split: str
    label: str
    predicted: str
    method: str
    probabilities: dict[str, float]
    figure: str
    classes: list[dict[str, Any]]
    note: str | None = optional()


def explain_heatmap(ws: Workspace, index: int, *, class_name: str | None = None, method: str | None = None,
                    shared_scale: bool = False) -> HeatmapResult:
    """Input score maps of one image for every class (or one), as a PNG and numbers.

    ``method="influence"``: influential scores (Jung et al.); ``"gradient"``: d logit / d pixel
    (Lo). Default: influential scores, or prediction gradients on a model the influence rules do
    not cover (a vision transformer's attention); ``note`` then says why. ``shared_scale`` draws
    every map on one colour scale (default: each on its own, as the figure says). The model and
    images are the Workspace's; the figure goes to ``ws.out``.
    """
    if method is not None and method not in METHODS:
        raise UsageError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    note = None
    one = _one_image(ws, index)
    if method is None:
        try:
            InfluentialScores(one.net).attribute(one.x, target=0)
            method = "influence"
        except UsageError as exc:
            method = "gradient"
            note = f"prediction gradients shown: {str(exc).splitlines()[0]}"
    split = one.data.split
    data, raw, label, net, x = one.data, one.raw, one.label, one.net, one.x
    with torch.no_grad():
        probs = net(x).softmax(1)[0].cpu()
    names = data.class_names
    targets = [_class_index(names, class_name)] if class_name else list(range(len(names)))
    explainer = InfluentialScores(net) if method == "influence" else PredictionGradients(net)
    maps = [explainer.attribute(x, target=t)[0].sum(0).cpu().numpy() for t in targets]
    from deepatlas.report.attribution import input_score_grid

    pred = int(probs.argmax())
    fig = input_score_grid(raw[0].numpy(), [(f"{names[t]} (p={probs[t]:.2f})", m) for t, m in zip(targets, maps, strict=True)],
                           ws.out / f"heatmap-{method}-{split}-{index}.png",
                           title=f"{data.name}/{split} #{index}: label {names[label]}, predicted {names[pred]} ({method})",
                           label=f"{method} score of the pixel for the class", shared_scale=shared_scale)
    return HeatmapResult(
        image=index, split=split, label=names[label], predicted=names[pred], method=method,
        probabilities={names[i]: float(p) for i, p in enumerate(probs)}, figure=str(fig),
        classes=[{"class": names[t], "positive": float(m[m > 0].sum()), "negative": float(m[m < 0].sum())}
                 for t, m in zip(targets, maps, strict=True)], note=note,
    )


@dataclass
class FiltersResult(Result):
    """Each captured unit's influential score on one class for one image."""

    image: int
    label: str
    predicted: str
    target: str
    figure: str
    layers: dict[str, list[float]]
    top: list[dict[str, Any]]


def explain_filters(ws: Workspace, index: int, *, class_name: str | None = None) -> FiltersResult:
    """Each captured unit's influential score on the predicted (or a given) class for one image;
    a conv filter sums its positions."""
    one = _one_image(ws, index)
    split = one.data.split
    data, label, net, x = one.data, one.label, one.net, one.x
    with torch.no_grad():
        pred = int(net(x).argmax(1))
    target = _class_index(data.class_names, class_name) if class_name else pred
    layers = default_layers(net, x)
    scores = InfluentialScores(net).attribute_layers(x, target, list(layers))
    per = [(name, (s[0].flatten(1).sum(1) if s.ndim > 2 else s[0]).cpu().numpy()) for name, s in zip(layers, scores, strict=True)]
    from deepatlas.report.attribution import filter_bars

    names = data.class_names
    fig = filter_bars(per, ws.out / f"filters-{split}-{index}.png",
                      title=f"#{index} ({names[label]}): influential score of each unit on {names[target]}",
                      quantity="influential score")
    return FiltersResult(
        image=index, label=names[label], predicted=names[pred], target=names[target], figure=str(fig),
        layers={name: [float(v) for v in s] for name, s in per},
        top=[{"unit": u, "score": v} for u, v in sorted(
            ((f"{name}:{i}", float(v)) for name, s in per for i, v in enumerate(s)), key=lambda t: -t[1])[:10]])


@dataclass
class DisagreementResult(Result):
    """Units correlated with a class but not influential on it (or not its gradient), and the reverse."""

    run: str
    class_name: str | None = field(metadata={"key": "class"})
    by: str
    k: int
    min_r: float
    correlated_not_by: list[dict[str, Any]]
    by_not_correlated: list[dict[str, Any]]
    correlation: str = "pearson"  #: what r is: the run's co-activation (RunInfo.correlation)

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "class": self.class_name, "correlation": self.correlation, "by": self.by, "k": self.k,
                "min_r": self.min_r,
                "correlated_not_" + self.by: self.correlated_not_by, self.by + "_not_correlated": self.by_not_correlated}


def disagreement(ws: Workspace, *, class_name: str | None = None, by: str = "influence", min_r: float = 0.5,
                 k: int = 10) -> DisagreementResult:
    """Units strongly correlated with a class but with little influence (or gradient) on it,
    and the reverse. Ranks within each class: a unit is "strong" by a measure when it is in the
    class's top ``k`` by that measure, "weak" when outside the top half.
    """
    if by not in METHODS:
        raise UsageError(f"by must be one of {', '.join(METHODS)}, got {by!r}")
    graph, info = ws.graph, ws.run_info()
    stored = resolve_class(graph, info, class_name) if class_name else None
    rows = run_template(graph, "disagreement", {"run": info.name, "class": stored or "", "by": by})
    if not rows:
        raise UsageError(f"run {info.name} has no {'INFLUENCES' if by == 'influence' else 'GRADIENT'} edges; "
                         "ingest with --edges including " + by)
    out: dict[str, list[dict[str, Any]]] = {"correlated_not_" + by: [], by + "_not_correlated": []}
    by_class: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_class.setdefault(row["class"], []).append(row)
    for cls, items in by_class.items():
        r_rank = {id(x): i for i, x in enumerate(sorted(items, key=lambda x: -x["r"]))}
        s_rank = {id(x): i for i, x in enumerate(sorted(items, key=lambda x: -abs(x["score"])))}
        half = len(items) // 2
        for x in items:
            entry = {"class": cls, "unit": f"{x['layer']}:{x['unit']}", "r": x["r"], by: x["score"],
                     "r_rank": r_rank[id(x)] + 1, by + "_rank": s_rank[id(x)] + 1}
            if r_rank[id(x)] < k and s_rank[id(x)] >= half and x["r"] >= min_r:
                out["correlated_not_" + by].append(entry)
            if s_rank[id(x)] < k and r_rank[id(x)] >= half:
                out[by + "_not_correlated"].append(entry)
    return DisagreementResult(info.name, stored, by, k, min_r, out["correlated_not_" + by], out[by + "_not_correlated"],
                              info.correlation)


@dataclass
class FeatureResult(Result):
    """The most characteristic feature (unit and region) of one image for one class."""

    image: int
    label: str
    class_name: str = field(metadata={"key": "class"})
    unit: str
    layer: str
    index: int
    position: list[int] | None
    region: list[int] | None
    score: float
    score_kind: str
    output: str
    figure: str


def explain_feature(
    ws: Workspace,
    index: int,
    *,
    class_name: str | None = None,
    layers: list[str] | None = None,
    score: str = "pg",
    output: str = "logit",
) -> FeatureResult:
    """The most characteristic feature of an image for its own class (default) or for ``class_name``:
    the captured conv unit and region with the largest prediction gradient (``score="pg"``, the
    thesis) or activation x prediction gradient (``score="activation-x-pg"``).

    References
    ----------
    Lo, H. Z. (2016), "Querying Deep Neural Networks with Gradients", M.S. thesis, University of
    Massachusetts Boston.
    """
    from deepatlas.explain.query import characteristic_feature
    from deepatlas.report.attribution import feature_figure

    one = _one_image(ws, index)
    data, raw, label, net, x = one.data, one.raw, one.label, one.net, one.x
    target = _class_index(data.class_names, class_name) if class_name else label
    if layers:
        search = list(layers)
    else:  # every captured conv layer (spatial maps), else every captured layer: one probe of the model
        captured = ActivationRecorder(net, example=x).layers
        search = [s.name for s in captured if s.kind == "conv"] or [s.name for s in captured]
    feat = characteristic_feature(net, x, target, search, score=score, output=output)
    names = data.class_names
    fig = feature_figure(raw[0].numpy(), feat.region, feat.activation_map, feat.gradient_map,
                         ws.out / f"feature-{data.split}-{index}-{target}.png",
                         title=(f"{one.ckpt.name}, {data.name} {data.split} image #{index} ({names[label]}): what makes it "
                                f"{names[target]}?\nunit {feat.layer}:{feat.unit}, the largest "
                                f"{'prediction gradient' if score == 'pg' else 'activation x prediction gradient'}"),
                         gradient_label=f"d {'logit' if output == 'logit' else 'P'}({names[target]}) / d activation")
    return FeatureResult(image=index, label=names[label], class_name=names[target], unit=f"{feat.layer}:{feat.unit}",
                         layer=feat.layer, index=feat.unit, position=list(feat.position) if feat.position else None,
                         region=list(feat.region) if feat.region else None, score=feat.score, score_kind=score,
                         output=output, figure=str(fig))


@dataclass
class PerturbResult(Result):
    """One image perturbed toward a class: confidence per step and the step where it flips."""

    image: int
    label: str
    original: str
    toward: str
    step_size: float
    steps: int
    flip_step: int | None
    target_prob: list[float]
    original_prob: list[float]
    predicted: list[str]
    figure: str


def explain_perturb(ws: Workspace, index: int, toward: str, *, steps: int = 20, step_size: float = 0.02) -> PerturbResult:
    """Perturb one image toward a class along d y_C / d x; confidence per step and the flip."""
    from deepatlas.explain.query import perturb_toward
    from deepatlas.report.attribution import perturbation_strip

    one = _one_image(ws, index)
    ckpt, data, raw, label, net = one.ckpt, one.data, one.raw, one.label, one.net
    target = _class_index(data.class_names, toward)
    res = perturb_toward(net, raw.to(one.device), target, steps=steps, step_size=step_size, prepare=ckpt.normalize)
    names = data.class_names
    imgs = res["images"].cpu().numpy()  # (steps, C, H, W): drawn in colour when C is 3
    labels = [f"step {i}: {names[p]}\np({names[target]})={tp:.2f}" for i, (p, tp) in enumerate(zip(res["predicted"], res["target_prob"], strict=True))]
    fig = perturbation_strip(imgs, labels, ws.out / f"perturb-{data.split}-{index}-to-{target}.png",
                             title=f"#{index} ({names[label]}) toward {names[target]}, step size {step_size}")
    return PerturbResult(image=index, label=names[label], original=names[res["original"]], toward=names[target],
                         step_size=step_size, steps=steps, flip_step=res["flip_step"], target_prob=res["target_prob"],
                         original_prob=res["original_prob"], predicted=[names[p] for p in res["predicted"]], figure=str(fig))


#: Default step sizes of the single-step sweep (eps multiplies d p / d x as it is; see docs/REPRODUCTION.md).
STEP_SIZES = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


@dataclass
class SweepResult(Result):
    """Targeted perturbations of correctly classified images toward every other class."""

    mode: str
    images: int
    class_names: list[str]
    success: list[Any]
    target_success: dict[str, Any]
    figure: str
    output: str | None = optional()
    pairs: int | None = optional()
    step_sizes: list[float] | None = optional()
    induced_error: list[float] | None = optional()
    grad_max_median: float | None = optional()
    steps: int | None = optional()
    step_size: float | None = optional()


def perturb_sweep(
    ws: Workspace,
    *,
    images: int = 100,
    mode: str = "single-step",
    step_sizes: Sequence[float] = STEP_SIZES,
    output: str = "prob",
    steps: int = 10,
    step_size: float = 0.02,
) -> SweepResult:
    """Targeted perturbations of correctly classified images (stratified) toward every other class.

    ``mode="single-step"`` (the thesis, the default): one step x + eps * d y_t / d x for each
    eps in ``step_sizes`` (y: the probability, or the logit with ``output="logit"``); per eps,
    the success at the target (share predicted as t) and the induced error (share no longer
    predicted as the true class), with a figure of both against eps.

    ``mode="iterative"`` (a variant): up to ``steps`` steps of ``step_size`` along the
    normalised gradient of the logit (no pixel moves more than ``step_size`` per step); the
    flip success per (true class, target class).

    References
    ----------
    Lo, H. Z. (2016), "Querying Deep Neural Networks with Gradients", M.S. thesis, University of
    Massachusetts Boston (Figs. 4.6, 4.7).
    """
    from deepatlas.explain.query import perturb_toward, single_step_sweep
    from deepatlas.report.attribution import matrix_figure, step_sweep_figure

    if images < 1:
        raise UsageError("images must be >= 1")
    if mode not in ("single-step", "iterative"):
        raise UsageError(f"mode must be single-step or iterative, got {mode!r}")
    ckpt, data = _images(ws)
    dev, progress = ws.device, ws.progress
    net = ckpt.model.to(dev).eval()
    n = len(data.class_names)
    per = max(1, images // n)
    sub = data.subset(per_class=per * 3)
    preds = predictions(net, Stream(sub, ckpt.normalize, device=dev, batch_size=500))
    chosen = [i for c in range(n) for i in torch.nonzero((sub.labels == c) & (preds == c)).flatten()[:per].tolist()]
    images_chosen = sub.take(chosen)  # the perturbed images: per class at most `images // classes`
    names = list(data.class_names)
    if mode == "single-step":
        xs = images_chosen.to(dev)
        labels = sub.labels[chosen]
        pairs_x, pairs_l, pairs_t = [], [], []
        for t in range(n):
            keep = labels != t
            pairs_x.append(xs[keep.to(xs.device)])
            pairs_l.append(labels[keep])
            pairs_t.append(torch.full((int(keep.sum()),), t, dtype=torch.long))
        x_all, l_all, t_all = torch.cat(pairs_x), torch.cat(pairs_l), torch.cat(pairs_t)
        parts = []
        for s in range(0, len(x_all), 256):
            parts.append(single_step_sweep(net, x_all[s : s + 256], l_all[s : s + 256], t_all[s : s + 256].to(dev),
                                           list(step_sizes), output=output, prepare=ckpt.normalize))
            progress("perturb", min(s + 256, len(x_all)) - s, len(x_all))
        p = torch.cat([torch.tensor(part["predicted"]) for part in parts], dim=1)  # (eps, pairs)
        success = (p == t_all).to(torch.float64).mean(1).tolist()
        induced = (p != l_all).to(torch.float64).mean(1).tolist()
        per_target = {names[t]: [float((p[e][t_all == t] == t).to(torch.float64).mean()) for e in range(len(step_sizes))]
                      for t in range(n)}
        grad_max = sorted(g for part in parts for g in part["grad_max"])
        fig = step_sweep_figure(list(step_sizes), success, induced, ws.out / f"perturb-single-step-{output}.png",
                                title=f"{ckpt.name} on {data.name} {data.split}: one step along "
                                      f"d {'p' if output == 'prob' else 'logit'}(target)/dx, {len(chosen)} images x {n - 1} targets",
                                xlabel=f"step size eps (x' = x + eps * d {'p' if output == 'prob' else 'logit'}/dx)")
        return SweepResult(mode=mode, output=output, images=len(chosen), pairs=len(x_all), class_names=names,
                           step_sizes=list(step_sizes), success=success, induced_error=induced, target_success=per_target,
                           grad_max_median=grad_max[len(grad_max) // 2] if grad_max else 0.0, figure=str(fig))
    tries = np.zeros((n, n))
    wins = np.zeros((n, n))
    for k, i in enumerate(chosen):
        c = int(sub.labels[i])
        for t in range(n):
            if t == c:
                continue
            res = perturb_toward(net, images_chosen[k : k + 1].to(dev), t, steps=steps, step_size=step_size, prepare=ckpt.normalize)
            tries[c, t] += 1
            wins[c, t] += res["flip_step"] is not None
        progress("perturb", 1, len(chosen))
    rate = np.where(tries > 0, wins / np.maximum(tries, 1), np.nan)
    fig = matrix_figure(rate, names, ws.out / f"perturb-sweep-{steps}x{step_size}.png",
                        title=f"{ckpt.name} on {data.name} {data.split}: images pushed toward each other class\n"
                              f"along the gradient, at most {steps} steps of {step_size} per pixel "
                              f"({len(chosen)} correctly classified images)",
                        xlabel="target class", ylabel="true class", label="share of the images flipped to the target")
    easiest = np.nanmean(rate, axis=0)
    return SweepResult(mode=mode, images=len(chosen), steps=steps, step_size=step_size, class_names=names,
                       success=[[None if np.isnan(v) else float(v) for v in row] for row in rate],
                       target_success={names[t]: float(easiest[t]) for t in range(n)}, figure=str(fig))
