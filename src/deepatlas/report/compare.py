"""Figures of a comparison of two runs: the CKA matrix and the class-pair drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from deepatlas.report._save import save

__all__ = ["cka_figure", "drift_figure"]

#: Layer names on an axis beyond this many are thinned to every n-th (the matrix keeps them all).
MAX_TICKS = 40


def _ticks(ax: Any, names: list[str], axis: str) -> None:
    step = max(1, int(np.ceil(len(names) / MAX_TICKS)))
    pos = list(range(0, len(names), step))
    labels = [names[i] for i in pos]
    if axis == "x":
        ax.set_xticks(pos, labels, rotation=60, ha="right", fontsize=7)
    else:
        ax.set_yticks(pos, labels, fontsize=7)


def cka_figure(rep: Any, path: Path) -> Path:
    """Linear CKA, layers of the base run (rows) x layers of the head run (columns): per-channel
    means beside flattened maps when both were computed, one colour scale 0..1."""
    mats = [("per-channel means (exact)", np.array(rep.cka_means, dtype=float))]
    if rep.cka_flattened is not None:
        mats.append(("flattened maps (minibatch estimate)", np.array(rep.cka_flattened, dtype=float)))
    rows, cols = len(rep.layers_base), len(rep.layers_head)
    side = float(np.clip(0.28 * max(rows, cols) + 2.5, 4.0, 10.0))
    fig, axes = plt.subplots(1, len(mats), figsize=(side * len(mats) + 1.2, side), dpi=110, squeeze=False)
    im = None
    for k, (ax, (title, m)) in enumerate(zip(axes[0], mats, strict=True)):
        im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis", interpolation="nearest", aspect="auto")
        _ticks(ax, rep.layers_head, "x")
        _ticks(ax, rep.layers_base, "y")
        ax.set_xlabel(f"layers of {rep.head} (head)", fontsize=8)
        if k == 0:  # the panels share their rows
            ax.set_ylabel(f"layers of {rep.base} (base)", fontsize=8)
        ax.set_title(title, fontsize=9)
        if rows * cols <= 100:  # numbers where they stay legible
            for i in range(rows):
                for j in range(cols):
                    if np.isfinite(m[i, j]):
                        ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6.5,
                                color="white" if m[i, j] < 0.6 else "black")
    assert im is not None
    fig.colorbar(im, ax=axes[0].tolist(), label="linear CKA\n(1: the same up to rotation and scale)", shrink=0.85)
    fig.suptitle(f"{rep.base} vs {rep.head}: layer similarity over {rep.images:,} images", fontsize=10)
    return save(fig, path, tight=False, bbox_inches="tight")


def drift_figure(rep: Any, path: Path, *, label_top: int = 8) -> Path:
    """Each class pair: change in Jaccard of the neuron sets (x) against change in mistakes (y),
    from base to head; the pairs whose mistakes rose most are labelled. Pairs on one spot are
    one marker with its count."""
    pairs = rep.pair_drift
    fig, ax = plt.subplots(figsize=(7.5, 5.5), dpi=110)
    if not pairs:
        ax.text(0.5, 0.5, "no class pairs in common", ha="center", va="center", transform=ax.transAxes)
        return save(fig, path)
    spots: dict[tuple[float, int], list[dict[str, Any]]] = {}
    for p in pairs:
        spots.setdefault((round(p["jaccard_change"], 9), p["mistakes_change"]), []).append(p)
    sx = np.array([k[0] for k in spots])
    sy = np.array([k[1] for k in spots])
    n = np.array([len(v) for v in spots.values()])
    colour = np.where(sy > 0, "#D55E00", np.where(sy < 0, "#0072B2", "#999999"))
    ax.scatter(sx, sy, s=24 + 70 * np.log10(n), c=colour, alpha=0.8, edgecolors="white", linewidths=0.5)
    ax.axhline(0, color="#555555", lw=0.6)
    ax.axvline(0, color="#555555", lw=0.6)
    # label the spots that moved most, rises and falls alike, one label per spot, moved down
    # past labels already placed close by
    ordered = sorted(spots.items(), key=lambda kv: -abs(kv[0][1]))
    rises = [kv for kv in ordered if kv[0][1] > 0][: label_top // 2]  # the rises first: what a gate looks for
    chosen = rises + [kv for kv in ordered if kv[0][1] < 0][: label_top - len(rises)]
    fig.canvas.draw()
    to_px = ax.transData.transform
    placed: list[tuple[float, float]] = []
    for (x, y), group in chosen:
        px, py = to_px((x, y))
        dy = 3.0
        while any(abs(px - qx) < 170 and abs(py + dy - qy) < 11 for qx, qy in placed):
            dy -= 11
        placed.append((px, py + dy))
        more = f" and {len(group) - 1} more" if len(group) > 1 else ""
        ax.annotate(f"{group[0]['a']} / {group[0]['b']}{more} ({y:+d})", (x, y), fontsize=7, xytext=(4, dy),
                    textcoords="offset points",
                    arrowprops=None if dy == 3.0 else {"arrowstyle": "-", "lw": 0.5, "color": "#555555"})
    rose = sum(1 for p in pairs if p["mistakes_change"] > 0)
    fell = sum(1 for p in pairs if p["mistakes_change"] < 0)
    ax.set_xlabel(f"change in Jaccard of the two classes' top-{rep.params['top_k']} neuron sets ({rep.base} -> {rep.head})")
    ax.set_ylabel("change in mistakes between the two classes (count)")
    ax.set_title(f"{rep.base} -> {rep.head}: class pairs (orange: {rose} more confused, blue: {fell} less, grey: same;\n"
                 "marker area: pairs on that spot)", fontsize=9)
    ax.grid(alpha=0.3)
    return save(fig, path)
