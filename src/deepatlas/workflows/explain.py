"""Explanations of one image (input score maps, filter scores) and the graph's disagreements."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from deepatlas.data.base import ImageSet, load_dataset
from deepatlas.db.graph import Graph
from deepatlas.db.queries import resolve_class, run_template
from deepatlas.db.runs import resolve_run
from deepatlas.errors import NotFoundError, UsageError
from deepatlas.explain.gradients import PredictionGradients
from deepatlas.explain.influence import InfluentialScores
from deepatlas.ingest.capture import default_layers
from deepatlas.models.checkpoint import Checkpoint, load_checkpoint
from deepatlas.workflows.build import pick_device

__all__ = ["METHODS", "disagreement", "explain_filters", "explain_heatmap"]

METHODS = ("influence", "gradient")


def _image(ckpt: Checkpoint, index: int, dataset: str, split: str, data_dir: str | Path | None) -> tuple[ImageSet, torch.Tensor, int]:
    data = load_dataset(dataset, split, data_dir=data_dir)
    if not 0 <= index < len(data):
        raise UsageError(f"image index {index} is out of range: {data.name}/{split} has images 0..{len(data) - 1}")
    if tuple(ckpt.meta.get("input_shape", data.input_shape)) != data.input_shape:
        raise UsageError(f"the model expects {tuple(ckpt.meta['input_shape'])} images, {data.name} has {data.input_shape}")
    return data, data.images[index : index + 1], int(data.labels[index])


def _class_index(names: tuple[str, ...], name: str) -> int:
    for i, stored in enumerate(names):
        if stored.lower() == name.strip().lower():
            return i
    raise NotFoundError(f"no class {name!r}; classes: {', '.join(names)}")


def explain_heatmap(
    model: str | Path,
    index: int,
    *,
    class_name: str | None = None,
    method: str = "influence",
    dataset: str = "fashion-mnist",
    split: str = "test",
    data_dir: str | Path | None = None,
    device: str = "auto",
    out_dir: str | Path = ".",
) -> dict[str, Any]:
    """Input score maps of one image for every class (or one), as a PNG and numbers.

    ``method="influence"``: influential scores (Jung et al.); ``"gradient"``: d logit / d pixel (Lo).
    """
    if method not in METHODS:
        raise UsageError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    ckpt = load_checkpoint(model)
    data, raw, label = _image(ckpt, index, dataset, split, data_dir)
    dev = pick_device(device)
    net = ckpt.model.to(dev).eval()
    x = ckpt.normalize(raw).to(dev)
    with torch.no_grad():
        probs = net(x).softmax(1)[0].cpu()
    names = data.class_names
    targets = [_class_index(names, class_name)] if class_name else list(range(len(names)))
    explainer = InfluentialScores(net) if method == "influence" else PredictionGradients(net)
    maps = [explainer.attribute(x, target=t)[0].sum(0).cpu().numpy() for t in targets]
    from deepatlas.report.attribution import input_score_grid

    pred = int(probs.argmax())
    fig = input_score_grid(raw[0, 0].numpy(), [(f"{names[t]} ({probs[t]:.2f})", m) for t, m in zip(targets, maps, strict=True)],
                           Path(out_dir) / f"heatmap-{method}-{split}-{index}.png",
                           title=f"{data.name}/{split} #{index}: label {names[label]}, predicted {names[pred]} ({method})")
    return {
        "image": index, "split": split, "label": names[label], "predicted": names[pred], "method": method,
        "probabilities": {names[i]: float(p) for i, p in enumerate(probs)}, "figure": str(fig),
        "classes": [{"class": names[t], "positive": float(m[m > 0].sum()), "negative": float(m[m < 0].sum())}
                    for t, m in zip(targets, maps, strict=True)],
    }


def explain_filters(
    model: str | Path,
    index: int,
    *,
    class_name: str | None = None,
    dataset: str = "fashion-mnist",
    split: str = "test",
    data_dir: str | Path | None = None,
    device: str = "auto",
    out_dir: str | Path = ".",
) -> dict[str, Any]:
    """Each captured unit's influential score on the predicted (or a given) class for one image;
    a conv filter sums its positions."""
    ckpt = load_checkpoint(model)
    data, raw, label = _image(ckpt, index, dataset, split, data_dir)
    dev = pick_device(device)
    net = ckpt.model.to(dev).eval()
    x = ckpt.normalize(raw).to(dev)
    with torch.no_grad():
        pred = int(net(x).argmax(1))
    target = _class_index(data.class_names, class_name) if class_name else pred
    layers = default_layers(net, x)
    scores = InfluentialScores(net).attribute_layers(x, target, list(layers))
    per = [(name, (s[0].flatten(1).sum(1) if s.ndim > 2 else s[0]).cpu().numpy()) for name, s in zip(layers, scores, strict=True)]
    from deepatlas.report.attribution import filter_bars

    names = data.class_names
    fig = filter_bars(per, Path(out_dir) / f"filters-{split}-{index}.png",
                      title=f"#{index} ({names[label]}): influential score of each unit on {names[target]}")
    return {"image": index, "label": names[label], "predicted": names[pred], "target": names[target], "figure": str(fig),
            "layers": {name: [float(v) for v in s] for name, s in per},
            "top": [{"unit": u, "score": v} for u, v in sorted(
                ((f"{name}:{i}", float(v)) for name, s in per for i, v in enumerate(s)), key=lambda t: -t[1])[:10]]}


def disagreement(
    graph: Graph, *, run: str | None = None, class_name: str | None = None, by: str = "influence",
    min_r: float = 0.5, k: int = 10,
) -> dict[str, Any]:
    """Units strongly correlated with a class but with little influence (or gradient) on it,
    and the reverse. Ranks within each class: a unit is "strong" by a measure when it is in the
    class's top ``k`` by that measure, "weak" when outside the top half.
    """
    if by not in METHODS:
        raise UsageError(f"by must be one of {', '.join(METHODS)}, got {by!r}")
    info = resolve_run(graph, run)
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
    return {"run": info.name, "class": stored, "by": by, "k": k, "min_r": min_r, **out}
