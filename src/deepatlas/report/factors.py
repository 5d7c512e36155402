"""Figures for the coupled factorisation: RMSE vs rank, spectra, latent images, unit loadings."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from deepatlas.report._save import save

__all__ = ["factor_heatmaps", "latent_images", "rmse_figure", "spectra_figure", "top_units"]


def rmse_figure(per_model: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for name, rows in per_model.items():
        ax.plot([r["rank"] for r in rows], [r["relative_error"] for r in rows], "-o", ms=3, label=name)
    ax.set_xlabel("rank of the coupled factorisation (factors)")
    ax.set_ylabel("relative reconstruction error ||A - UV|| / ||A||\n(mean over the layers' matrices)")
    ax.set_title("coupled NMF: reconstruction error vs rank")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)


#: Spectra are drawn down to this share of the largest singular value; smaller ones are zero up to
#: rounding (a dead unit makes one) and would stretch the axis over 15 decades.
SPECTRUM_FLOOR = 1e-6


def spectra_figure(per_model: dict[str, dict[str, list[float]]], path: Path) -> Path:
    """One panel per layer: each model's singular values / the largest, on a log axis cut at
    :data:`SPECTRUM_FLOOR` (the panel says how many fell below it)."""
    layers = sorted({layer for sp in per_model.values() for layer in sp})
    fig, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers), 3.4), dpi=110, squeeze=False)
    for ax, layer in zip(axes[0], layers, strict=True):
        below = 0
        for name, sp in per_model.items():
            if layer in sp:
                values = np.asarray(sp[layer], dtype=float)
                below = max(below, int((values < SPECTRUM_FLOOR).sum()))
                ax.semilogy(np.arange(1, len(values) + 1), np.maximum(values, SPECTRUM_FLOOR), label=name, lw=1)
        ax.set_ylim(bottom=SPECTRUM_FLOOR / 2)
        if below:
            ax.text(0.97, 0.04, f"{below} value(s) < {SPECTRUM_FLOOR:g}\n(zero: dead units) drawn at the floor",
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=6.5)
        ax.set_title(layer, fontsize=9)
        ax.set_xlabel("singular value number (1 = largest)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("singular value / largest")
    axes[0, -1].legend(fontsize=7, title="model", title_fontsize=7)
    fig.suptitle("singular value spectra of each layer's activations (normalised to the largest)", fontsize=10)
    return save(fig, path)


def latent_images(p: torch.Tensor, shape: tuple[int, int], path: Path) -> Path:
    """Each column of the pixel loading P as an image."""
    r = p.shape[1]
    cols = min(r, 8)
    rows = (r + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 2 * rows), dpi=110, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, ax in enumerate(axes.ravel()[:r]):
        ax.imshow(p[:, i].reshape(shape).numpy(), cmap="magma")
        ax.set_title(f"factor {i}", fontsize=8)
    fig.suptitle("pixel loading of each factor (brighter = larger; each image on its own scale)", fontsize=9)
    return save(fig, path)


#: A unit-loading panel draws at most this many units as rows; a layer with more shows, for each
#: factor, the units with the largest loading on it (:func:`top_units`), and its title says so.
MAX_UNIT_ROWS = 256
#: Panels per row of the unit-loading figure (up to 20 layers; more take a squarer grid).
FACTOR_COLUMNS = 5
#: The unit-loading figure's width and height stay within this many pixels.
MAX_FIGURE_PX = 2400


def top_units(q: np.ndarray, most: int = MAX_UNIT_ROWS) -> tuple[list[np.ndarray], int]:
    """The units a panel shows: every unit (one group) when there are no more than ``most``;
    else for each factor in turn the ``most // factors`` units with the largest loading on it
    not already shown for an earlier one, each group largest first. Returns the groups (unit
    indices) and how many a group holds at most (the units' count when all are shown)."""
    n, r = q.shape
    if n <= most or r == 0:
        return [np.arange(n)], n
    per = max(1, most // r)
    seen: set[int] = set()
    groups: list[np.ndarray] = []
    for f in range(r):
        group: list[int] = []
        for u in np.argsort(-q[:, f], kind="stable"):
            if int(u) not in seen:
                group.append(int(u))
                seen.add(int(u))
                if len(group) == per:
                    break
        groups.append(np.array(group, dtype=int))
    return groups, per


def factor_heatmaps(loadings: dict[str, torch.Tensor], path: Path) -> Path:
    """Per layer: units x factors loadings, each row scaled to its maximum.

    Panels wrap into rows of :data:`FACTOR_COLUMNS`; a layer of more than :data:`MAX_UNIT_ROWS`
    units shows the top units of each factor (grouped, a white line between groups, the group's
    factor on the y axis) and its title says how many of how many; the figure stays within
    :data:`MAX_FIGURE_PX` pixels a side."""
    from deepatlas.report.figures import title_chars, wrap_title

    names = list(loadings)
    n = max(1, len(names))
    cols = min(n, FACTOR_COLUMNS) if n <= 4 * FACTOR_COLUMNS else math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    dpi, fontsize = 110, 8
    width, height = 2.7, 3.0  # a panel, inches
    shrink = min(1.0, (MAX_FIGURE_PX / dpi - 1.3) / (width * cols), (MAX_FIGURE_PX / dpi - 0.8) / ((height + 0.45) * rows))
    width, height = width * shrink, height * shrink
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + 1.3, (height + 0.45) * rows + 0.8), dpi=dpi,
                             squeeze=False, layout="constrained")
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    im = None
    for ax, name in zip(axes.ravel(), names, strict=False):
        q = loadings[name]
        raw = q.detach().cpu().numpy() if isinstance(q, torch.Tensor) else np.asarray(q)
        m = raw / np.maximum(raw.max(1, keepdims=True), 1e-12)
        groups, per = top_units(raw)  # by the loading itself, not by its share of the unit's largest
        shown = np.concatenate(groups) if groups else np.arange(0)
        im = ax.imshow(m[shown], aspect="auto", cmap="viridis", interpolation="nearest", vmin=0, vmax=1)
        units = m.shape[0]
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, nbins=8))
        ax.tick_params(labelsize=7)
        ax.set_xlabel("factor", fontsize=fontsize)
        label = wrap_title(name, title_chars(width - 0.2, fontsize), max_lines=2)
        if len(groups) == 1:
            ax.set_title(f"{label}\nall {units:,} units", fontsize=fontsize)
            ax.set_ylabel("unit", fontsize=fontsize)
            continue
        ax.set_title(f"{label}\n{len(shown):,} of {units:,} units: top {per} per factor", fontsize=fontsize)
        ax.set_ylabel(f"top {per} units of each factor (by loading)", fontsize=7)
        starts = np.cumsum([0, *(len(g) for g in groups)])
        for edge in starts[1:-1]:
            ax.axhline(edge - 0.5, color="white", lw=0.6)
        step = max(1, math.ceil(len(groups) / 16))
        ax.set_yticks([(starts[f] + starts[f + 1] - 1) / 2 for f in range(0, len(groups), step)],
                      [f"f{f}" for f in range(0, len(groups), step)], fontsize=6)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6 if rows == 1 else 0.45,
                     label="loading / the unit's largest loading")
    cut = any(loadings[k].shape[0] > MAX_UNIT_ROWS for k in names)
    heading = ("unit loadings of each factor" + (f", per layer ({len(names)} layers)" if len(names) > 1 else "")
               + (f"; layers of more than {MAX_UNIT_ROWS} units: the units loading most on each factor" if cut else ""))
    fig.suptitle(textwrap.fill(heading, title_chars(fig.get_size_inches()[0] - 0.3, 10)), fontsize=10)
    return save(fig, path, tight=False)
