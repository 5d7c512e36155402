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
    keys, labels = _node_ids(result, run)
    assert result.pixels.r is not None, "pixel correlations are always computed whole"
    grid = result.pixel_shape if any(result.pixel_shape) else result.input_shape
    pixel_keys = [pixel_key(run, ch, y, x) for ch in range(grid[0]) for y in range(grid[1]) for x in range(grid[2])]
    edges: dict[tuple[str, str], EdgeTable] = {}
    _unit_pair_edges(edges, result, params, keys, labels)
    if params.pixel_top_k > 0:
        _pixel_edges(edges, result, params.pixel_top_k, keys, labels, pixel_keys)
    pr_t = np.round(result.pixels.r.numpy().T, 5)  # (M, P): one pixel vector per node, as stored
    return GraphTables(_layer_rows(result, run, grid), _neuron_rows(result, run, keys, pr_t), _class_rows(result, run, keys, pr_t),
                       _pixel_rows(result, run, grid, pixel_keys), [*edges.values(), _confusion_edges(result, keys)])


def _layer_rows(result: CoactivationResult, run: str, grid: tuple[int, int, int]) -> list[dict[str, Any]]:
    """One row per captured layer, between an ``input`` layer (the pixels) and an ``output`` one (the classes)."""
    c, h, w = grid
    layers = [
        {"key": layer_key(run, s.name), "run": run, "name": s.name, "position": s.position, "kind": s.kind, "size": s.size}
        for s in result.layers
    ]
    layers.insert(0, {"key": layer_key(run, "input"), "run": run, "name": "input", "position": 0, "kind": "input", "size": c * h * w})
    layers.append({"key": layer_key(run, "output"), "run": run, "name": "output", "position": len(result.layers) + 1,
                   "kind": "output", "size": len(result.class_names)})
    return layers


def _neuron_rows(result: CoactivationResult, run: str, keys: list[str], pr_t: np.ndarray) -> list[dict[str, Any]]:
    """One row per hidden unit: its statistics and its pixel correlation vector ``pr_t[j]``."""
    units = result.units
    mean, std, dead = units.mean_x.numpy(), units.std_x.numpy(), units.dead_x.numpy()
    rows: list[dict[str, Any]] = []
    j = 0
    for s in result.layers:
        for i in range(s.size):
            rows.append({
                "key": keys[j], "run": run, "layer": s.name, "layer_key": layer_key(run, s.name), "index": i,
                "kind": s.kind, "mean": float(mean[j]), "std": float(std[j]), "dead": bool(dead[j]),
                "pixel_r": pr_t[j].tolist(),
            })
            j += 1
    return rows


def _class_rows(result: CoactivationResult, run: str, keys: list[str], pr_t: np.ndarray) -> list[dict[str, Any]]:
    """One row per class: its statistics, support (true count), predicted count and pixel vector."""
    units, h = result.units, result.n_hidden
    mean, std, dead = units.mean_x.numpy(), units.std_x.numpy(), units.dead_x.numpy()
    support, predicted = result.confusion.sum(1).tolist(), result.confusion.sum(0).tolist()
    return [
        {"key": keys[h + k], "run": run, "index": k, "name": name, "mean": float(mean[h + k]),
         "std": float(std[h + k]), "dead": bool(dead[h + k]), "support": int(support[k]),
         "predicted": int(predicted[k]), "pixel_r": pr_t[h + k].tolist(), "layer_key": layer_key(run, "output")}
        for k, name in enumerate(result.class_names)
    ]


def _pixel_rows(result: CoactivationResult, run: str, grid: tuple[int, int, int], pixel_keys: list[str]) -> list[dict[str, Any]]:
    _, h, w = grid
    px = result.pixels
    pmean, pstd, pdead = px.mean_x.numpy(), px.std_x.numpy(), px.dead_x.numpy()
    return [
        {"key": k, "run": run, "channel": idx // (h * w), "y": (idx // w) % h, "x": idx % w,
         "mean": float(pmean[idx]), "std": float(pstd[idx]), "dead": bool(pdead[idx])}
        for idx, k in enumerate(pixel_keys)
    ]


def _coactivates(edges: dict[tuple[str, str], EdgeTable], src_label: str, dst_label: str) -> EdgeTable:
    """The COACTIVATES table for one (source label, target label) pair."""
    return edges.setdefault((src_label, dst_label), EdgeTable("COACTIVATES", src_label, dst_label, props={"r": []}))


def _unit_pair_edges(edges: dict[tuple[str, str], EdgeTable], result: CoactivationResult, params: SparsifyParams,
                     keys: list[str], labels: list[str]) -> None:
    """Unit-unit and unit-class COACTIVATES rows: the pairs a blockwise pass chose, or those chosen now from r."""
    if result.pairs is not None:
        if not result.pairs.params.same_pairs(params):
            raise UsageError("the co-activation pairs were chosen with other sparsify parameters; compute them again")
        ii, jj, rv = result.pairs.i, result.pairs.j, result.pairs.r
    else:
        assert result.units.r is not None, "a dense result carries its r matrix"
        r = result.units.r.numpy()
        is_class = np.array([lab == "Class" for lab in labels])
        ii, jj = select_pairs(r, is_class, result.units.dead_x.numpy(), params)
        rv = r[ii, jj]
    for i, jx, rij in zip(ii.tolist(), jj.tolist(), rv.tolist(), strict=True):
        t = _coactivates(edges, labels[i], labels[jx])
        t.src.append(keys[i])
        t.dst.append(keys[jx])
        t.props["r"].append(round(rij, 6))


def _pixel_edges(edges: dict[tuple[str, str], EdgeTable], result: CoactivationResult, top_k: int, keys: list[str],
                 labels: list[str], pixel_keys: list[str]) -> None:
    """Pixel -> node COACTIVATES rows: each live node's ``top_k`` live pixels by |r|."""
    assert result.pixels.r is not None
    pr, pdead, dead = result.pixels.r.numpy(), result.pixels.dead_x.numpy(), result.units.dead_x.numpy()
    a = np.abs(pr)
    a[pdead, :] = -1.0
    k = min(top_k, int((~pdead).sum()))
    if k == 0:
        return
    for node in range(len(keys)):
        if dead[node]:
            continue
        top = np.argpartition(-a[:, node], kth=k - 1)[:k]
        t = _coactivates(edges, "Pixel", labels[node])
        for px in top.tolist():
            t.src.append(pixel_keys[px])
            t.dst.append(keys[node])
            t.props["r"].append(round(float(pr[px, node]), 6))


def _confusion_edges(result: CoactivationResult, keys: list[str]) -> EdgeTable:
    """CONFUSED_WITH rows: every (true, predicted) pair of distinct classes seen at least once."""
    conf = EdgeTable("CONFUSED_WITH", "Class", "Class", props={"count": [], "rate": []})
    cm, h = result.confusion, result.n_hidden
    support = cm.sum(1).tolist()
    for a_i in range(cm.shape[0]):
        for b_i in range(cm.shape[1]):
            count = int(cm[a_i, b_i])
            if a_i != b_i and count > 0:
                conf.src.append(keys[h + a_i])
                conf.dst.append(keys[h + b_i])
                conf.props["count"].append(count)
                conf.props["rate"].append(count / max(1, int(support[a_i])))
    return conf


def params_dict(params: SparsifyParams) -> dict[str, Any]:
    return asdict(params)


def attribution_tables(
    run: str,
    result: CoactivationResult,
    *,
    gradient: dict[str, Any] | None = None,
    influence: dict[str, Any] | None = None,
    between: dict[tuple[str, str], Any] | None = None,
    influence_top_k: int = 0,
) -> list[EdgeTable]:
    """GRADIENT and INFLUENCES edges from class-level attribution matrices.

    ``gradient`` / ``influence``: {layer: (n_classes, units)}; ``between``: {(lower, upper):
    (units_lower, units_upper)}. Dead units get no edges; exact zeros are not stored.
    ``influence_top_k`` > 0 keeps, per upper unit, only its that many lower units of largest
    |score| (see :class:`SparsifyParams`).
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
        classes = [class_key(run, c) for c in range(len(result.class_names))]
        for layer, mat in mats.items():
            m = np.asarray(mat, dtype=np.float64)  # (classes, units)
            cc, ii = np.nonzero((m != 0) & ~dead[layer][None, :])
            units = [neuron_key(run, layer, i) for i in range(m.shape[1])]
            t.src.extend(units[i] for i in ii.tolist())
            t.dst.extend(classes[c] for c in cc.tolist())
            t.props[prop].extend(round(v, 7) for v in m[cc, ii].tolist())
        tables.append(t)
    if between:
        t = EdgeTable("INFLUENCES", "Neuron", "Neuron", props={"score": []})
        for (lower, upper), mat in between.items():
            m = np.asarray(mat, dtype=np.float64)  # (lower units, upper units)
            keep = (m != 0) & ~dead[lower][:, None] & ~dead[upper][None, :]
            if 0 < influence_top_k < m.shape[0]:
                strongest = np.argpartition(-np.where(keep, np.abs(m), -1.0), influence_top_k - 1, axis=0)[:influence_top_k]
                top = np.zeros_like(keep)
                np.put_along_axis(top, strongest, True, axis=0)
                keep &= top
            ii, kk = np.nonzero(keep)
            lows = [neuron_key(run, lower, i) for i in range(m.shape[0])]
            ups = [neuron_key(run, upper, k) for k in range(m.shape[1])]
            t.src.extend(lows[i] for i in ii.tolist())
            t.dst.extend(ups[k] for k in kk.tolist())
            t.props["score"].extend(round(v, 7) for v in m[ii, kk].tolist())
        tables.append(t)
    return tables
