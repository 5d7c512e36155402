"""From a :class:`CoactivationResult` to node and edge rows for the graph.

Pure functions; no database here. Keys are single strings scoped by the ingest id
(``Run.key``), so runs of several models coexist::

    Layer  {run}/layer/{name}      Neuron {run}/n/{layer}/{index}
    Class  {run}/class/{index}     Pixel  {run}/px/{channel}/{y}/{x}

Rows are lazy (:class:`deepatlas.rows.LazyRows`): edge tables hold index and value arrays and
node rows are made a write batch at a time, so the tables of a 40,000-unit run cost their
arrays, not millions of Python dicts.

Sparsification (:class:`SparsifyParams`), recorded on the Run:

- unit-unit pairs: the rules of :mod:`deepatlas.ingest.pairs` (noise floor, threshold and
  top-k picks, per-node and per-run caps; each class's strongest units), chosen during the
  co-activation pass;
- each unit and class keeps its ``pixel_top_k`` strongest pixel edges; its full pixel
  correlation vector is also stored on the node as ``pixel_r`` (a heatmap is one read);
- GRADIENT and neuron->class INFLUENCES: each class keeps the same number of units as its
  COACTIVATES (:func:`deepatlas.ingest.pairs.class_top_k`), the largest |score|;
  neuron->neuron INFLUENCES: each upper unit its ``influence_top_k`` lower units;
- dead (constant) units and pixels get no edges at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from deepatlas.errors import UsageError
from deepatlas.ingest.coactivation import CoactivationResult
from deepatlas.ingest.pairs import SparsifyParams, class_top_k
from deepatlas.rows import (
    EdgeTable,
    GraphTables,
    KeyColumn,
    LazyRows,
    class_key,
    layer_key,
    neuron_key,
    pixel_key,
)

__all__ = ["AttributionCounts", "EdgeTable", "GraphTables", "SparsifyParams", "attribution_tables", "build_tables",
           "class_key", "layer_key", "neuron_key", "pixel_key"]


def _node_ids(result: CoactivationResult, run: str) -> tuple[list[str], np.ndarray]:
    """Every node's key, in node order (hidden units, then classes), and an is-class mask."""
    keys = [neuron_key(run, spec.name, i) for spec in result.layers for i in range(spec.size)]
    keys += [class_key(run, c) for c in range(len(result.class_names))]
    is_class = np.zeros(len(keys), dtype=bool)
    is_class[result.n_hidden :] = True
    return keys, is_class


def build_tables(result: CoactivationResult, run: str, params: SparsifyParams | None = None) -> GraphTables:
    """Turn a co-activation result into rows for the graph.

    Parameters
    ----------
    result : CoactivationResult
        With its chosen pairs (``result.pairs``).
    run : str
        The ingest id (``Run.key``) every node carries.
    params : SparsifyParams, optional
        Must choose the same pairs as the ones the result was made with.

    Returns
    -------
    GraphTables
    """
    params = params or SparsifyParams()
    keys, is_class = _node_ids(result, run)
    assert result.pixels.r is not None, "pixel correlations are always computed whole"
    grid = result.pixel_shape if any(result.pixel_shape) else result.input_shape
    pixel_keys = [pixel_key(run, ch, y, x) for ch in range(grid[0]) for y in range(grid[1]) for x in range(grid[2])]
    edges = _unit_pair_edges(result, params, keys, is_class)
    if params.pixel_top_k > 0:
        edges += _pixel_edges(result, params.pixel_top_k, keys, is_class, pixel_keys)
    pr = result.pixels.r.numpy()  # (P, M); each node's column is its stored pixel_r
    return GraphTables(_layer_rows(result, run, grid), _neuron_rows(result, run, keys, pr), _class_rows(result, run, keys, pr),
                       _pixel_rows(result, run, grid, pixel_keys), [*edges, _confusion_edges(result, keys)])


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


def _neuron_rows(result: CoactivationResult, run: str, keys: list[str], pr: np.ndarray) -> LazyRows:
    """One row per hidden unit: its statistics and its pixel correlation vector (column of ``pr``)."""
    units = result.units
    mean, std, dead = units.mean_x.numpy(), units.std_x.numpy(), units.dead_x.numpy()
    layer_of = np.repeat(np.arange(len(result.layers)), [s.size for s in result.layers])
    first = np.cumsum([0] + [s.size for s in result.layers])

    def make(start: int, stop: int) -> list[dict[str, Any]]:
        vectors = np.round(pr[:, start:stop].T, 5).tolist()
        rows = []
        for j in range(start, stop):
            s = result.layers[int(layer_of[j])]
            rows.append({
                "key": keys[j], "run": run, "layer": s.name, "layer_key": layer_key(run, s.name),
                "index": int(j - first[layer_of[j]]), "kind": s.kind, "mean": float(mean[j]), "std": float(std[j]),
                "dead": bool(dead[j]), "pixel_r": vectors[j - start],
            })
        return rows

    return LazyRows(result.n_hidden, make)


def _class_rows(result: CoactivationResult, run: str, keys: list[str], pr: np.ndarray) -> LazyRows:
    """One row per class: its statistics, support (true count), predicted count and pixel vector."""
    units, h = result.units, result.n_hidden
    mean, std, dead = units.mean_x.numpy(), units.std_x.numpy(), units.dead_x.numpy()
    support, predicted = result.confusion.sum(1).tolist(), result.confusion.sum(0).tolist()
    n = len(result.class_names)

    def make(start: int, stop: int) -> list[dict[str, Any]]:
        vectors = np.round(pr[:, h + start : h + stop].T, 5).tolist()
        return [
            {"key": keys[h + k], "run": run, "index": k, "name": result.class_names[k], "mean": float(mean[h + k]),
             "std": float(std[h + k]), "dead": bool(dead[h + k]), "support": int(support[k]),
             "predicted": int(predicted[k]), "pixel_r": vectors[k - start], "layer_key": layer_key(run, "output")}
            for k in range(start, stop)
        ]

    return LazyRows(n, make)


def _pixel_rows(result: CoactivationResult, run: str, grid: tuple[int, int, int], pixel_keys: list[str]) -> LazyRows:
    _, h, w = grid
    px = result.pixels
    pmean, pstd, pdead = px.mean_x.numpy(), px.std_x.numpy(), px.dead_x.numpy()

    def make(start: int, stop: int) -> list[dict[str, Any]]:
        return [
            {"key": pixel_keys[idx], "run": run, "channel": idx // (h * w), "y": (idx // w) % h, "x": idx % w,
             "mean": float(pmean[idx]), "std": float(pstd[idx]), "dead": bool(pdead[idx])}
            for idx in range(start, stop)
        ]

    return LazyRows(len(pixel_keys), make)


def _label(is_class: bool) -> str:
    return "Class" if is_class else "Neuron"


def _unit_pair_edges(result: CoactivationResult, params: SparsifyParams, keys: list[str], is_class: np.ndarray) -> list[EdgeTable]:
    """Unit-unit, unit-class and class-class COACTIVATES: the pairs the co-activation pass chose,
    one table per (source label, target label)."""
    if result.pairs is None:
        raise UsageError("the co-activation result carries no chosen pairs; compute it with sparsify rules")
    if not result.pairs.params.same_pairs(params):
        raise UsageError("the co-activation pairs were chosen with other sparsify parameters; compute them again")
    ii, jj, rv = result.pairs.i, result.pairs.j, np.round(result.pairs.r, 6)
    tables = []
    for src_class in (False, True):
        for dst_class in (False, True):
            sel = np.flatnonzero((is_class[ii] == src_class) & (is_class[jj] == dst_class))
            if len(sel):
                tables.append(EdgeTable("COACTIVATES", _label(src_class), _label(dst_class), KeyColumn(keys, ii[sel]),
                                        KeyColumn(keys, jj[sel]), {"r": rv[sel]}))
    return tables


def _pixel_edges(result: CoactivationResult, top_k: int, keys: list[str], is_class: np.ndarray,
                 pixel_keys: list[str]) -> list[EdgeTable]:
    """Pixel -> node COACTIVATES rows: each live node's ``top_k`` live pixels by |r|."""
    assert result.pixels.r is not None
    pr, pdead, dead = result.pixels.r.numpy(), result.pixels.dead_x.numpy(), result.units.dead_x.numpy()
    k = min(top_k, int((~pdead).sum()))
    if k == 0:
        return []
    tables = []
    for cls in (False, True):
        nodes = np.flatnonzero((is_class == cls) & ~dead)
        if not len(nodes):
            continue
        src, dst, r = [], [], []
        for s in range(0, len(nodes), 1024):  # bands of nodes: |r| temporaries stay P x 1024
            band = nodes[s : s + 1024]
            a = np.abs(pr[:, band])
            a[pdead, :] = -1.0
            top = np.argpartition(-a, kth=k - 1, axis=0)[:k]  # (k, band)
            src.append(top.T.reshape(-1))
            dst.append(np.repeat(band, k))
            r.append(np.round(np.take_along_axis(pr[:, band], top, axis=0).T.reshape(-1), 6))
        tables.append(EdgeTable("COACTIVATES", "Pixel", _label(cls), KeyColumn(pixel_keys, np.concatenate(src)),
                                KeyColumn(keys, np.concatenate(dst)), {"r": np.concatenate(r)}))
    return tables


def _confusion_edges(result: CoactivationResult, keys: list[str]) -> EdgeTable:
    """CONFUSED_WITH rows: every (true, predicted) pair of distinct classes seen at least once."""
    cm, h = result.confusion.numpy(), result.n_hidden
    support = np.maximum(1, cm.sum(1))
    off = cm.copy()
    np.fill_diagonal(off, 0)
    a, b = np.nonzero(off > 0)
    return EdgeTable("CONFUSED_WITH", "Class", "Class", KeyColumn(keys, a + h), KeyColumn(keys, b + h),
                     {"count": cm[a, b].astype(np.int64), "rate": cm[a, b] / support[a]})


def params_dict(params: SparsifyParams) -> dict[str, Any]:
    return asdict(params)


@dataclass
class AttributionCounts:
    """What the caps of :func:`attribution_tables` kept: per relationship, edges stored and the
    pairs they were chosen from, and for neuron->neuron INFLUENCES the share of the total
    |score| the stored edges carry."""

    gradient: tuple[int, int] = (0, 0)
    influence_class: tuple[int, int] = (0, 0)
    influence_between: tuple[int, int] = (0, 0)
    between_mass_kept: float = 1.0


def attribution_tables(
    run: str,
    result: CoactivationResult,
    *,
    gradient: dict[str, Any] | None = None,
    influence: dict[str, Any] | None = None,
    between: dict[tuple[str, str], Any] | None = None,
    influence_top_k: int = 0,
    per_class: int | None = None,
    counts: AttributionCounts | None = None,
) -> list[EdgeTable]:
    """GRADIENT and INFLUENCES edges from class-level attribution matrices.

    ``gradient`` / ``influence``: {layer: (n_classes, units)}; ``between``: {(lower, upper):
    (units_lower, units_upper)}. Dead units get no edges; exact zeros are not stored.
    ``per_class`` > 0 keeps, per class, only its that many units of largest |score| over all
    layers (None: every unit). ``influence_top_k`` > 0 keeps, per upper unit, only its that
    many lower units of largest |score| (see :class:`SparsifyParams`).
    """
    dead: dict[str, np.ndarray] = {}
    j = 0
    mask = result.units.dead_x.numpy()
    for spec in result.layers:
        dead[spec.name] = mask[j : j + spec.size]
        j += spec.size
    tables: list[EdgeTable] = []
    classes = [class_key(run, c) for c in range(len(result.class_names))]
    for rel, prop, mats, field_name in (("GRADIENT", "pg", gradient, "gradient"), ("INFLUENCES", "score", influence, "influence_class")):
        if not mats:
            continue
        layer_names = list(mats)
        unit_keys = [neuron_key(run, layer, i) for layer in layer_names for i in range(np.asarray(mats[layer]).shape[1])]
        m = np.concatenate([np.asarray(mats[layer], dtype=np.float64) for layer in layer_names], axis=1)  # (classes, units)
        keep = (m != 0) & ~np.concatenate([dead[layer] for layer in layer_names])[None, :]
        total = int(keep.sum())
        if per_class is not None and 0 < per_class < m.shape[1]:
            best = np.argpartition(-np.where(keep, np.abs(m), -1.0), per_class - 1, axis=1)[:, :per_class]
            top = np.zeros_like(keep)
            np.put_along_axis(top, best, True, axis=1)
            keep &= top
        cc, ii = np.nonzero(keep)
        order = np.lexsort((cc, ii))  # unit-major, as the rows were always written
        cc, ii = cc[order], ii[order]
        if counts is not None:
            setattr(counts, field_name, (len(ii), total))
        tables.append(EdgeTable(rel, "Neuron", "Class", KeyColumn(unit_keys, ii), KeyColumn(classes, cc),
                                {prop: np.round(m[cc, ii], 7)}))
    if between:
        src: list[np.ndarray] = []
        dst: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        keys: list[str] = []
        offsets: dict[str, int] = {}
        mass_all = mass_kept = 0.0
        total = 0
        for (lower, upper), mat in between.items():
            for layer in (lower, upper):
                if layer not in offsets:
                    offsets[layer] = len(keys)
                    keys += [neuron_key(run, layer, i) for i in range(len(dead[layer]))]
            m = np.asarray(mat, dtype=np.float64)  # (lower units, upper units)
            keep = (m != 0) & ~dead[lower][:, None] & ~dead[upper][None, :]
            total += int(keep.sum())
            mass_all += float(np.abs(m[keep]).sum())
            if 0 < influence_top_k < m.shape[0]:
                strongest = np.argpartition(-np.where(keep, np.abs(m), -1.0), influence_top_k - 1, axis=0)[:influence_top_k]
                top = np.zeros_like(keep)
                np.put_along_axis(top, strongest, True, axis=0)
                keep &= top
            ii, kk = np.nonzero(keep)
            mass_kept += float(np.abs(m[ii, kk]).sum())
            src.append(ii + offsets[lower])
            dst.append(kk + offsets[upper])
            vals.append(np.round(m[ii, kk], 7))
        if counts is not None:
            counts.influence_between = (int(sum(len(s) for s in src)), total)
            counts.between_mass_kept = mass_kept / mass_all if mass_all else 1.0
        tables.append(EdgeTable("INFLUENCES", "Neuron", "Neuron", KeyColumn(keys, np.concatenate(src)),
                                KeyColumn(keys, np.concatenate(dst)), {"score": np.concatenate(vals)}))
    return tables


def class_edges_per_class(params: SparsifyParams, result: CoactivationResult) -> int:
    """How many units each class keeps in GRADIENT / INFLUENCES (as in COACTIVATES)."""
    return class_top_k(params, result.n_hidden, len(result.class_names))
