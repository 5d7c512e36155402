"""Compare two runs over the same images: what changed inside the model between two checkpoints.

One streaming pass runs both runs' models over the shared images and accumulates

- the joint covariance of every unit of both models (:class:`deepatlas.ingest.stats.CoMoments`):
  linear CKA between every layer of A and every layer of B on the per-channel means (exact),
  and each unit pair's r for the matching;
- the batches' Gram matrices of the flattened maps: linear CKA by the minibatch estimator
  (:class:`deepatlas.graphops.cka.MinibatchCKA`).

Memory: (units of A + units of B)^2 doubles for the covariance, a few batch x batch Gram
matrices per layer; nothing grows with the images. Then, from the two stored graphs: each
class's top-k drivers in A mapped through the matching against its drivers in B, the class
pairs' mistakes and Jaccard in A and B, and the agreement of the two class partitions
(adjusted Rand index, NMI). Written as a ``(:Comparison)`` node linked to both runs, with
``(:Neuron)-[:MATCHES {r, kind, comparison}]->(:Neuron)`` edges from A's units to B's.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from deepatlas.db.analytics import RunGraph, read_run_graph
from deepatlas.db.runs import RunInfo
from deepatlas.db.templates import cypher
from deepatlas.errors import UsageError
from deepatlas.graphops.cka import MinibatchCKA, cka_from_covariance, match_units
from deepatlas.workflows.analysis import _communities, _overlap, _stored_communities, neuron_label
from deepatlas.workspace import Result, Workspace

log = logging.getLogger(__name__)

__all__ = ["ComparisonReport", "DiffAudit", "audit_diff", "compare_runs", "comparison_key", "similarity_pass"]

#: The joint covariance is (units of A + units of B)^2 doubles; above this many units together
#: the comparison is refused with the flag that narrows it.
MAX_UNITS = 12_000


def comparison_key(base: RunInfo, head: RunInfo) -> str:
    return f"compare/{base.key}/{head.key}"


@dataclass
class ComparisonReport(Result):
    """What changed from run ``base`` (A) to run ``head`` (B) on the same images."""

    key: str
    base: str
    head: str
    images: int
    layers_base: list[str]
    layers_head: list[str]
    cka_means: list[list[float]]
    cka_flattened: list[list[float]] | None
    layer_matches: list[dict[str, Any]]
    class_drift: list[dict[str, Any]]
    pair_drift: list[dict[str, Any]]
    communities: dict[str, Any]
    params: dict[str, Any]
    figures: dict[str, str] = field(default_factory=dict)
    matches: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "base": self.base, "head": self.head, "images": self.images,
                "layers_base": self.layers_base, "layers_head": self.layers_head,
                "cka": {"per_channel_means": self.cka_means, "flattened_maps": self.cka_flattened,
                        "note": "rows: layers of base, columns: layers of head; per-channel means exact over all "
                                "images, flattened maps by the minibatch estimator (Nguyen et al. 2021)"},
                "layer_matches": self.layer_matches, "class_drift": self.class_drift, "pair_drift": self.pair_drift,
                "communities": self.communities, "params": self.params, "figures": self.figures}


def _same_images(a: RunInfo, b: RunInfo) -> None:
    for what, x, y in (("data", a.dataset, b.dataset), ("split", a.split, b.split), ("images", a.n_samples, b.n_samples)):
        if x != y:
            raise UsageError(f"runs {a.name} and {b.name} were made on other images ({what}: {x} vs {y}); compare needs "
                             "two runs over the same data, split and number of images (ingest the head checkpoint with "
                             f"--data {a.dataset} --split {a.split} --limit {a.n_samples})")
    if a.correlation != b.correlation:  # class drift and overlap compare the stored r: one measure on both sides
        raise UsageError(f"run {a.name} stores {a.correlation} co-activation and {b.name} {b.correlation}; compare needs "
                         f"both the same (ingest the head checkpoint with --correlation {a.correlation})")


def _recorder(ckpt: Any, layers: list[str], example: torch.Tensor) -> Any:
    from deepatlas.ingest.capture import ActivationRecorder

    return ActivationRecorder(ckpt.model, layers, example=example)


def similarity_pass(ckpt_a: Any, ckpt_b: Any, images: Any, layers_a: list[str], layers_b: list[str], *,
                    device: torch.device, batch_size: int = 64, flattened: bool = True,
                    progress: Any = None) -> tuple[torch.Tensor, torch.Tensor | None, list[Any], list[Any], int]:
    """One pass of both checkpoints over ``images``: the joint covariance of every unit of both
    (per-channel means), the minibatch CKA of the flattened maps (or None), the two layer specs,
    and the number of images seen."""
    from deepatlas.ingest.capture import reduce_units
    from deepatlas.ingest.stats import CoMoments
    from deepatlas.models.sites import hooks

    dev = device
    example = images.take([0])
    rec_a = _recorder(ckpt_a, layers_a, ckpt_a.normalize(example))
    rec_b = _recorder(ckpt_b, layers_b, ckpt_b.normalize(example))
    m = rec_a.n_units + rec_b.n_units
    if m > MAX_UNITS:
        raise UsageError(f"the two runs have {m:,} units together; compare holds their joint covariance "
                         f"({m * m * 8 / 2**20:,.0f} MB) up to {MAX_UNITS:,} units: compare runs ingested with fewer --layers")
    model_a, model_b = ckpt_a.model.to(dev).eval(), ckpt_b.model.to(dev).eval()
    acc = CoMoments(m, device=dev)
    mini = MinibatchCKA(len(rec_a.layers), len(rec_b.layers)) if flattened else None
    done = 0

    def grab(store: dict[str, torch.Tensor], name: str) -> Any:
        def hook(_m: Any, _i: Any, out: Any) -> None:
            store[name] = out.detach()

        return hook

    with torch.no_grad():
        for batch in images.batches(batch_size, device=dev):
            raw_a: dict[str, torch.Tensor] = {}
            raw_b: dict[str, torch.Tensor] = {}
            with hooks(model_a, forward={s.name: grab(raw_a, s.name) for s in rec_a.layers}):
                model_a(ckpt_a.normalize(batch.images))
            with hooks(model_b, forward={s.name: grab(raw_b, s.name) for s in rec_b.layers}):
                model_b(ckpt_b.normalize(batch.images))
            units = [reduce_units(raw_a[s.name], s.kind).float() for s in rec_a.layers]
            units += [reduce_units(raw_b[s.name], s.kind).float() for s in rec_b.layers]
            acc.update(torch.cat(units, 1))
            if mini is not None:
                mini.update([raw_a[s.name] for s in rec_a.layers], [raw_b[s.name] for s in rec_b.layers])
            done += len(batch.images)
            if progress is not None:
                progress("compare", len(batch.images), len(images))
    cov = acc.cxy / max(acc.n - 1, 1)
    return cov.cpu(), (mini.compute() if mini is not None else None), list(rec_a.layers), list(rec_b.layers), done


def _slices(specs: list[Any], start: int = 0) -> list[slice]:
    out, at = [], start
    for s in specs:
        out.append(slice(at, at + s.size))
        at += s.size
    return out


def _class_partition(ws: Workspace, rg: RunGraph) -> tuple[list[int], str]:
    """Each class's community (stored ones when there are, else on the stored edges)."""
    comm = _stored_communities(ws.graph, rg.run, rg) or _communities(rg, 1.0, 0, "drop")
    where = "stored communities" if comm.params.get("read_from") else "computed on the stored edges"
    return [comm.membership.get(c["key"], -1) for c in rg.classes], f"{comm.graph} graph, {where}"


def compare_runs(ws: Workspace, base: str, head: str, *, top_k: int = 10, min_match_r: float = 0.5,
                 flattened: bool = True, batch_size: int = 64, write: bool = True, figures: bool = True) -> ComparisonReport:
    """Compare run ``base`` (A) with run ``head`` (B), both over the same images.

    Parameters
    ----------
    ws : Workspace
        The graph (its ``device`` runs both models, its ``out`` gets the figures).
    base, head : str
        Run names.
    top_k : int, default 10
        A class's drivers: its k units of largest stored r (as ``query drivers``).
    min_match_r : float, default 0.5
        A unit whose one-to-one partner correlates below this is *unmatched*.
    flattened : bool, default True
        Also CKA on the flattened maps (minibatch estimator; one n x n Gram matrix per layer
        per batch).
    batch_size : int, default 64
        Images per batch (also the minibatch CKA's batch).

    Raises
    ------
    UsageError
        The runs were made on other images, or hold too many units together.
    """
    if not 0.0 <= min_match_r <= 1.0:
        raise UsageError(f"min_match_r must lie in [0, 1], got {min_match_r}")
    if top_k <= 0 or batch_size < 4:
        raise UsageError("top_k must be positive and batch_size at least 4")
    ws_a = Workspace(ws.graph, run=base, device=ws.device_name)
    ws_b = Workspace(ws.graph, run=head, device=ws.device_name)
    ws_a.progress = ws.progress
    info_a, info_b = ws_a.run_info(), ws_b.run_info()
    _same_images(info_a, info_b)
    layers_a, layers_b = list(info_a.params.get("layers") or []), list(info_b.params.get("layers") or [])
    cov, flat, specs_a, specs_b, n = similarity_pass(ws_a.run_checkpoint(), ws_b.run_checkpoint(), ws_a.run_images(),
                                                     layers_a, layers_b, device=ws_a.device, batch_size=batch_size,
                                                     flattened=flattened, progress=ws.progress)
    sa, sb = _slices(specs_a), _slices(specs_b, sum(s.size for s in specs_a))
    cka = [[cka_from_covariance(cov, a, b) for b in sb] for a in sa]
    std = cov.diagonal().clamp(min=0).sqrt()
    names_a, names_b = [s.name for s in specs_a], [s.name for s in specs_b]
    rg_a, rg_b = read_run_graph(ws.graph, info_a), read_run_graph(ws.graph, info_b)
    key_a = {(row["layer"], int(row["index"])): row["key"] for row in rg_a.neurons}
    key_b = {(row["layer"], int(row["index"])): row["key"] for row in rg_b.neurons}
    key = comparison_key(info_a, info_b)

    # unit matching, per layer of A against its partner layer in B (same name, else highest CKA)
    matches: list[dict[str, Any]] = []
    layer_rows: list[dict[str, Any]] = []
    partner_of: dict[str, str] = {}  # unit key in A -> its one-to-one partner's key in B
    for i, (spec, a) in enumerate(zip(specs_a, sa, strict=True)):
        j = names_b.index(spec.name) if spec.name in names_b else int(np.nanargmax(np.nan_to_num(cka[i], nan=-1.0)))
        b = sb[j]
        den = std[a][:, None] * std[b][None, :]
        r = torch.where(den > 0, cov[a, b] / den.clamp(min=1e-300), torch.full_like(den, float("nan"))).numpy()
        um = match_units(r)
        matched = 0
        for ui, uj, rv in um.pairs:
            ka, kb = key_a.get((spec.name, ui)), key_b.get((names_b[j], uj))
            if ka is None or kb is None:
                continue
            if rv >= min_match_r:
                matched += 1
                partner_of[ka] = kb
                matches.append({"a": ka, "b": kb, "r": rv, "kind": "one-to-one"})
        for ui, (uj, rv) in enumerate(um.best):
            ka, kb = key_a.get((spec.name, ui)), key_b.get((names_b[j], uj))
            if ka is not None and kb is not None and rv >= min_match_r and partner_of.get(ka) != kb:
                matches.append({"a": ka, "b": kb, "r": rv, "kind": "best"})
        rs = [float(r[ui, uj]) for ui, uj, _ in um.pairs if np.isfinite(r[ui, uj])]  # live units on both sides
        live = int((std[a] > 0).sum())
        layer_rows.append({"layer_base": spec.name, "layer_head": names_b[j], "cka_means": cka[i][j],
                           "cka_flattened": None if flat is None else float(flat[i, j]), "units_base": spec.size,
                           "live_base": live, "units_head": specs_b[j].size, "matched": matched,
                           "unmatched": live - matched, "mean_match_r": float(np.mean(rs)) if rs else float("nan")})

    class_drift = _class_drift(rg_a, rg_b, partner_of, top_k)
    pair_drift = _pair_drift(rg_a, rg_b, partner_of, top_k)
    part_a, how_a = _class_partition(ws_a, rg_a)
    part_b, how_b = _class_partition(ws_b, rg_b)
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    communities = {"adjusted_rand": float(adjusted_rand_score(part_a, part_b)),
                   "nmi": float(normalized_mutual_info_score(part_a, part_b)),
                   "base": how_a, "head": how_b}
    params = {"top_k": top_k, "min_match_r": min_match_r, "flattened": flattened, "batch_size": batch_size,
              "units": "per-channel means (exact) and flattened maps (minibatch)" if flattened else "per-channel means (exact)"}
    report = ComparisonReport(key, info_a.name, info_b.name, n, names_a, names_b, cka,
                              None if flat is None else flat.tolist(), layer_rows, class_drift, pair_drift, communities,
                              params, matches=matches)
    if figures:
        from deepatlas.report.compare import cka_figure, drift_figure

        out = ws.out
        out.mkdir(parents=True, exist_ok=True)
        stem = f"compare-{info_a.name}-vs-{info_b.name}"
        report.figures["cka"] = str(cka_figure(report, out / f"{stem}-cka.png"))
        report.figures["drift"] = str(drift_figure(report, out / f"{stem}-drift.png"))
    if write:
        _write(ws, report, info_a, info_b)
    return report


def _top(class_r: np.ndarray, c: int, k: int) -> list[int]:
    col = class_r[:, c]
    order = np.argsort(-col, kind="stable")
    return [int(i) for i in order[:k] if col[i] > 0]


def _class_drift(rg_a: RunGraph, rg_b: RunGraph, partner_of: dict[str, str], k: int) -> list[dict[str, Any]]:
    names_b = {c["name"]: i for i, c in enumerate(rg_b.classes)}
    label_b = {row["key"]: neuron_label(row) for row in rg_b.neurons}
    rows = []
    for ca, cls in enumerate(rg_a.classes):
        cb = names_b.get(cls["name"])
        if cb is None:
            continue
        top_a = [rg_a.neurons[i]["key"] for i in _top(rg_a.class_r, ca, k)]
        top_b = [rg_b.neurons[i]["key"] for i in _top(rg_b.class_r, cb, k)]
        mapped = [partner_of.get(u) for u in top_a]
        kept = [u for u in mapped if u is not None and u in top_b]
        rank_b = {u: i + 1 for i, u in enumerate(top_b)}
        moves = [rank_b[u] - (mapped.index(u) + 1) for u in kept]
        rows.append({
            "class": cls["name"], "overlap": len(kept) / max(len(top_a), 1),
            "kept": len(kept), "top_k": k, "unmatched_drivers": sum(u is None for u in mapped),
            "mean_rank_change": float(np.mean(moves)) if moves else None,
            "gained": [label_b[u] for u in top_b if u not in kept],
            "lost": [neuron_label(rg_a.neurons[i]) for i in _top(rg_a.class_r, ca, k)
                     if partner_of.get(rg_a.neurons[i]["key"]) not in top_b],
        })
    return rows


def _pair_drift(rg_a: RunGraph, rg_b: RunGraph, partner_of: dict[str, str], k: int) -> list[dict[str, Any]]:
    ov_a, ov_b = _overlap(rg_a, k, None), _overlap(rg_b, k, None)
    names = [c["name"] for c in rg_a.classes]
    idx_b = {c["name"]: i for i, c in enumerate(rg_b.classes)}
    key_of_a = {neuron_label(row): row["key"] for row in rg_a.neurons}
    label_b = {row["key"]: neuron_label(row) for row in rg_b.neurons}
    rows = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            bi, bj = idx_b.get(names[i]), idx_b.get(names[j])
            if bi is None or bj is None:
                continue
            shared_a = set(ov_a.sets[names[i]]) & set(ov_a.sets[names[j]])
            shared_b = set(ov_b.sets[names[i]]) & set(ov_b.sets[names[j]])
            carried = {label_b.get(partner_of.get(key_of_a[u], ""), "") for u in shared_a}
            rows.append({"a": names[i], "b": names[j],
                         "mistakes_base": int(ov_a.mistakes[i, j]), "mistakes_head": int(ov_b.mistakes[bi, bj]),
                         "mistakes_change": int(ov_b.mistakes[bi, bj]) - int(ov_a.mistakes[i, j]),
                         "jaccard_base": float(ov_a.jaccard[i, j]), "jaccard_head": float(ov_b.jaccard[bi, bj]),
                         "jaccard_change": float(ov_b.jaccard[bi, bj] - ov_a.jaccard[i, j]),
                         "new_shared": sorted(shared_b - carried)})
    rows.sort(key=lambda r: (-r["mistakes_change"], -r["jaccard_change"], r["a"], r["b"]))
    return rows


def _write(ws: Workspace, rep: ComparisonReport, a: RunInfo, b: RunInfo) -> None:
    props = {"key": rep.key, "base": rep.base, "head": rep.head, "images": rep.images,
             "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
             "layers_base": rep.layers_base, "layers_head": rep.layers_head,
             "cka_means": json.dumps(rep.cka_means),
             "cka_flattened": json.dumps(rep.cka_flattened) if rep.cka_flattened is not None else None,
             "adjusted_rand": rep.communities["adjusted_rand"], "nmi": rep.communities["nmi"],
             "summary": json.dumps({"layer_matches": rep.layer_matches, "class_drift": rep.class_drift,
                                    "pair_drift": rep.pair_drift[:50], "params": rep.params})}
    ws.graph.write_until_done(cypher("delete_matches_batch"), {"comparison": rep.key})
    ws.graph.write(cypher("create_comparison"), {"props": props, "base": a.key, "head": b.key})
    ws.graph.write_batches(cypher("create_matches"), rep.matches, params={"comparison": rep.key}, batch_size=5_000)


@dataclass
class DiffAudit(Result):
    """``audit diff``: a comparison judged against thresholds (``failures`` empty = pass)."""

    comparison: ComparisonReport
    failures: list[str]
    thresholds: dict[str, Any]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        c = self.comparison
        return {"base": c.base, "head": c.head, "passed": self.passed, "failures": self.failures,
                "thresholds": self.thresholds, "layer_matches": c.layer_matches,
                "confusion_rises": [p for p in c.pair_drift if p["mistakes_change"] > 0][:20],
                "class_drift": c.class_drift, "communities": c.communities, "figures": c.figures}


def audit_diff(ws: Workspace, base: str, head: str, *, max_confusion_rise: int | None = None,
               min_cka: float | None = None, top_k: int = 10, figures: bool = False) -> DiffAudit:
    """Compare ``base`` with ``head`` (nothing is written) and fail when a class pair's mistakes
    rose by more than ``max_confusion_rise`` or a layer's CKA with its partner layer (per-channel
    means) fell below ``min_cka``."""
    if max_confusion_rise is not None and max_confusion_rise < 0:
        raise UsageError(f"max_confusion_rise must not be negative, got {max_confusion_rise}")
    if min_cka is not None and not 0.0 <= min_cka <= 1.0:
        raise UsageError(f"min_cka must lie in [0, 1], got {min_cka}")
    rep = compare_runs(ws, base, head, top_k=top_k, flattened=False, write=False, figures=figures)
    failures = []
    if max_confusion_rise is not None:
        over = [p for p in rep.pair_drift if p["mistakes_change"] > max_confusion_rise]
        if over:
            w = over[0]
            failures.append(f"{len(over)} class pair(s) rose by more than {max_confusion_rise} mistakes; worst "
                            f"{w['a']} / {w['b']}: {w['mistakes_base']} -> {w['mistakes_head']}")
    if min_cka is not None:
        low = [m for m in rep.layer_matches if not (m["cka_means"] >= min_cka)]
        if low:
            w = min(low, key=lambda m: m["cka_means"] if np.isfinite(m["cka_means"]) else -1.0)
            failures.append(f"{len(low)} layer(s) below CKA {min_cka}; lowest {w['layer_base']} vs {w['layer_head']} = "
                            f"{w['cka_means']:.3f}")
    return DiffAudit(rep, failures, {"max_confusion_rise": max_confusion_rise, "min_cka": min_cka})
