"""From a :class:`CoactivationResult` to node and edge rows for the graph.

Pure functions; no database here. Keys are single strings scoped by the ingest id
(``Run.key``), so runs of several models coexist and a re-ingest never collides::

    Layer  {run}/layer/{name}      Neuron {run}/n/{layer}/{index}
    Class  {run}/class/{index}     Pixel  {run}/px/{channel}/{y}/{x}

Sparsification (:class:`SparsifyParams`), recorded on the Run:

- unit-unit pairs: the rules of :mod:`deepatlas.ingest.pairs` (all hidden-class pairs, plus
  ``|r| >= min_abs_r`` or either endpoint's ``top_k``); a blockwise result arrives with its
  pairs already chosen;
- each unit and class keeps its ``pixel_top_k`` strongest pixel edges; its full pixel
  correlation vector is also stored on the node as ``pixel_r`` (a heatmap is one read);
- dead (constant) units and pixels get no edges at all.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from deepatlas.errors import UsageError
from deepatlas.ingest.coactivation import CoactivationResult
from deepatlas.ingest.pairs import SparsifyParams, select_pairs
from deepatlas.rows import EdgeTable, GraphTables, class_key, layer_key, neuron_key, pixel_key

__all__ = ["EdgeTable", "GraphTables", "SparsifyParams", "attribution_tables", "build_tables", "class_key", "layer_key", "neuron_key", "pixel_key"]


def _node_ids(result: CoactivationResult, run: str) -> tuple[list[str], list[str]]:
    keys, labels = [], []
    for spec in result.layers:
        for i in range(spec.size):
            keys.append(neuron_key(run, spec.name, i))
            labels.append("Neuron")
    for c in range(len(result.class_names)):
        keys.append(class_key(run, c))
        labels.append("Class")
    return keys, labels


def build_tables(
    result: CoactivationResult,
    run: str,
    params: SparsifyParams | None = None,
) -> GraphTables:
    """Turn a co-activation result into rows for the graph.

    Parameters
    ----------
    result : CoactivationResult
    run : str
        The ingest id (``Run.key``) every node carries.
    params : SparsifyParams, optional

    Returns
    -------
    GraphTables
    """
    params = params or SparsifyParams()
    units = result.units
    r = units.r.numpy() if units.r is not None else None
    dead = units.dead_x.numpy()
    n_hidden = result.n_hidden
    n_classes = len(result.class_names)
    keys, labels = _node_ids(result, run)
    is_class = np.array([lab == "Class" for lab in labels])
    mean, std = units.mean_x.numpy(), units.std_x.numpy()
    assert result.pixels.r is not None, "pixel correlations are always computed whole"
    pr = result.pixels.r.numpy()  # (P, M)
    pr_t = np.round(pr.T, 5)  # (M, P): one pixel vector per node
    c, h, w = result.pixel_shape if any(result.pixel_shape) else result.input_shape

    layers = [
        {"key": layer_key(run, s.name), "run": run, "name": s.name, "position": s.position, "kind": s.kind, "size": s.size}
        for s in result.layers
    ]
    layers.insert(0, {"key": layer_key(run, "input"), "run": run, "name": "input", "position": 0, "kind": "input", "size": c * h * w})
    layers.append({"key": layer_key(run, "output"), "run": run, "name": "output", "position": len(result.layers) + 1,
                   "kind": "output", "size": n_classes})
    neurons: list[dict[str, Any]] = []
    j = 0
    for s in result.layers:
        for i in range(s.size):
            neurons.append({
                "key": keys[j], "run": run, "layer": s.name, "layer_key": layer_key(run, s.name), "index": i,
                "kind": s.kind, "mean": float(mean[j]), "std": float(std[j]), "dead": bool(dead[j]),
                "pixel_r": pr_t[j].tolist(),
            })
            j += 1
    support = result.confusion.sum(1).tolist()
    predicted = result.confusion.sum(0).tolist()
    classes = [
        {"key": keys[n_hidden + k], "run": run, "index": k, "name": name, "mean": float(mean[n_hidden + k]),
         "std": float(std[n_hidden + k]), "dead": bool(dead[n_hidden + k]), "support": int(support[k]),
         "predicted": int(predicted[k]), "pixel_r": pr_t[n_hidden + k].tolist(), "layer_key": layer_key(run, "output")}
        for k, name in enumerate(result.class_names)
    ]
    pmean, pstd, pdead = result.pixels.mean_x.numpy(), result.pixels.std_x.numpy(), result.pixels.dead_x.numpy()
    pixel_keys = [pixel_key(run, ch, y, x) for ch in range(c) for y in range(h) for x in range(w)]
    pixels = [
        {"key": k, "run": run, "channel": idx // (h * w), "y": (idx // w) % h, "x": idx % w,
         "mean": float(pmean[idx]), "std": float(pstd[idx]), "dead": bool(pdead[idx])}
        for idx, k in enumerate(pixel_keys)
    ]

    edges: dict[tuple[str, str], EdgeTable] = {}

    def table(src_label: str, dst_label: str) -> EdgeTable:
        """The COACTIVATES table for one (source label, target label) pair."""
        return edges.setdefault((src_label, dst_label), EdgeTable("COACTIVATES", src_label, dst_label, props={"r": []}))

    if result.pairs is not None:
        if result.pairs.params != params:
            raise UsageError("the co-activation pairs were chosen with other sparsify parameters; compute them again")
        ii, jj, rv = result.pairs.i, result.pairs.j, result.pairs.r
    else:
        assert r is not None, "a dense result carries its r matrix"
        ii, jj = select_pairs(r, is_class, dead, params)
        rv = r[ii, jj]
    for i, jx, rij in zip(ii.tolist(), jj.tolist(), rv.tolist(), strict=True):
        t = table(labels[i], labels[jx])
        t.src.append(keys[i])
        t.dst.append(keys[jx])
        t.props["r"].append(round(rij, 6))

    if params.pixel_top_k > 0:
        live_px = ~pdead
        a = np.abs(pr)
        a[~live_px, :] = -1.0
        k = min(params.pixel_top_k, int(live_px.sum()))
        for node in range(len(keys)):
            if dead[node] or k == 0:
                continue
            top = np.argpartition(-a[:, node], kth=k - 1)[:k]
            t = table("Pixel", labels[node])
            for px in top.tolist():
                t.src.append(pixel_keys[px])
                t.dst.append(keys[node])
                t.props["r"].append(round(float(pr[px, node]), 6))

    conf = EdgeTable("CONFUSED_WITH", "Class", "Class", props={"count": [], "rate": []})
    cm = result.confusion
    for a_i in range(n_classes):
        for b_i in range(n_classes):
            count = int(cm[a_i, b_i])
            if a_i != b_i and count > 0:
                conf.src.append(keys[n_hidden + a_i])
                conf.dst.append(keys[n_hidden + b_i])
                conf.props["count"].append(count)
                conf.props["rate"].append(count / max(1, int(support[a_i])))
    return GraphTables(layers, neurons, classes, pixels, [*edges.values(), conf])


def params_dict(params: SparsifyParams) -> dict[str, Any]:
    return asdict(params)


def attribution_tables(
    run: str,
    result: CoactivationResult,
    *,
    gradient: dict[str, Any] | None = None,
    influence: dict[str, Any] | None = None,
    between: dict[tuple[str, str], Any] | None = None,
) -> list[EdgeTable]:
    """GRADIENT and INFLUENCES edges from class-level attribution matrices.

    ``gradient`` / ``influence``: {layer: (n_classes, units)}; ``between``: {(lower, upper):
    (units_lower, units_upper)}. Dead units get no edges; exact zeros are not stored.
    """
    dead: dict[str, np.ndarray] = {}
    j = 0
    mask = result.units.dead_x.numpy()
    for spec in result.layers:
        dead[spec.name] = mask[j : j + spec.size]
        j += spec.size
    tables: list[EdgeTable] = []
    for rel, prop, mats in (("GRADIENT", "pg", gradient), ("INFLUENCES", "score", influence)):
        if not mats:
            continue
        t = EdgeTable(rel, "Neuron", "Class", props={prop: []})
        for layer, mat in mats.items():
            m = np.asarray(mat)
            for c in range(m.shape[0]):
                for i in range(m.shape[1]):
                    if not dead[layer][i] and m[c, i] != 0:
                        t.src.append(neuron_key(run, layer, i))
                        t.dst.append(class_key(run, c))
                        t.props[prop].append(round(float(m[c, i]), 7))
        tables.append(t)
    if between:
        t = EdgeTable("INFLUENCES", "Neuron", "Neuron", props={"score": []})
        for (lower, upper), mat in between.items():
            m = np.asarray(mat)
            for i in range(m.shape[0]):
                if dead[lower][i]:
                    continue
                for k in range(m.shape[1]):
                    if not dead[upper][k] and m[i, k] != 0:
                        t.src.append(neuron_key(run, lower, i))
                        t.dst.append(neuron_key(run, upper, k))
                        t.props["score"].append(round(float(m[i, k]), 7))
        tables.append(t)
    return tables
