"""Pictures of attributions for one image: input score maps per class, filter score bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from deepatlas.report._save import save

__all__ = ["feature_figure", "filter_bars", "input_score_grid", "matrix_figure", "perturbation_strip"]


def as_picture(image: np.ndarray) -> np.ndarray:
    """(C, H, W) or (H, W) in [0, 1] -> what imshow draws as the image: (H, W) grey or (H, W, 3) colour."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[0] == 3:
        return np.clip(img.transpose(1, 2, 0), 0.0, 1.0)
    return img[0] if img.ndim == 3 else img


def show_image(ax: Any, image: np.ndarray) -> np.ndarray:
    """Draw an input image in its own colours (grey stays grey); return its brightness (H, W)."""
    pic = as_picture(image)
    if pic.ndim == 3:
        ax.imshow(pic)
        return pic @ np.array([0.299, 0.587, 0.114])
    ax.imshow(pic, cmap="gray", vmin=0.0, vmax=1.0)
    return pic


#: A map whose largest |value| is below this carries no signal (float rounding), and is said to.
NO_SIGNAL = 1e-12


def input_score_grid(image: np.ndarray, maps: list[tuple[str, np.ndarray]], path: Path, *, title: str = "",
                     label: str = "score of the pixel", shared: bool = False, shared_scale: bool = False) -> Path:
    """The image (in colour when it has three channels), then one score map per class: red
    positive, blue negative (RdBu, colour-blind safe), each on its own symmetric scale shown by
    its own colour bar (the default; a faint map then looks as strong as a strong one), or with
    ``shared_scale`` (``shared`` is its older name) all on one symmetric scale, +- the largest
    |value| over all maps, shown by one colour bar; the colour bar's label and the line under
    the panels say which. ``label`` names the quantity. The image's outline is drawn over each
    map. A map whose values are all below :data:`NO_SIGNAL` is left blank and says "no signal"
    (an EfficientNet's 1e-17 rounding drawn at full strength read as strong structure)."""
    shared = shared or shared_scale
    n = len(maps) + 1
    cols = min(n, 6)
    rows = (n + cols - 1) // cols
    size = (2.3 * cols + 1.0, 2.5 * rows + 0.6) if shared else (2.3 * cols, 2.0 * rows + 0.6)  # + the one bar
    fig, axes = plt.subplots(rows, cols, figsize=size, dpi=110, squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    bright = show_image(axes[0, 0], image)
    axes[0, 0].set_title("input image", fontsize=9)
    outline = bright > 0.5 * bright.max() if bright.max() > 0 else bright > 0
    top = max((float(np.abs(m).max()) for _, m in maps), default=0.0)
    drawn = None
    for ax, (name, m) in zip(axes.ravel()[1:], maps, strict=False):
        peak = float(np.abs(m).max())
        ax.set_title(name, fontsize=9)
        if peak < NO_SIGNAL:
            ax.text(0.5, 0.5, f"no signal\n(|score| < {NO_SIGNAL:g})", ha="center", va="center", fontsize=8,
                    transform=ax.transAxes, color="#555555")
            continue
        lim = (top if shared else peak) or 1.0
        drawn = im = ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.contour(outline.astype(float), levels=[0.5], colors="black", linewidths=0.6)
        if not shared:
            bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, ticks=[-lim, 0, lim])
            bar.ax.tick_params(labelsize=7)
            bar.ax.yaxis.set_major_formatter(lambda v, _: f"{v:.2g}")
            bar.set_label("own scale", fontsize=7)
    if shared and drawn is not None:
        lim = top or 1.0
        bar = fig.colorbar(drawn, ax=axes.ravel().tolist(), shrink=0.8 if rows > 1 else 0.9, ticks=[-lim, 0, lim])
        bar.ax.tick_params(labelsize=7)
        bar.ax.yaxis.set_major_formatter(lambda v, _: f"{v:.2g}")
        bar.set_label(f"{label}\nshared scale: +-{lim:.2g} (largest |score| of all maps)", fontsize=8)
    scale = ("one shared scale for all maps: colours compare across maps" if shared
             else "each map on its own scale (its own colour bar): compare colours within a map only")
    fig.supxlabel(f"colour: {label} (red +, blue -); {scale}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path, tight=False)


def filter_bars(layers: list[tuple[str, np.ndarray]], path: Path, *, title: str = "", quantity: str = "score") -> Path:
    """One bar chart per layer of per-filter scores (vermillion positive, blue negative)."""
    fig, axes = plt.subplots(len(layers), 1, figsize=(9, 2.3 * len(layers)), dpi=110, squeeze=False)
    for ax, (name, scores) in zip(axes[:, 0], layers, strict=True):
        colors = np.where(scores >= 0, "#D55E00", "#0072B2")
        ax.bar(np.arange(len(scores)), scores, color=colors)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_ylabel(f"{name}\n{quantity}", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("filter / unit index within the layer")
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)


def feature_figure(image: np.ndarray, region: tuple[int, int, int, int] | None, act: np.ndarray, grad: np.ndarray,
                   path: Path, *, title: str = "", gradient_label: str = "d output / d activation") -> Path:
    """The image with the characteristic region outlined, the unit's activation and PG maps
    (``gradient_label`` names the gradient's quantity on its colour bar)."""
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4), dpi=110)
    show_image(axes[0], image)
    if region is not None:
        x0, y0, x1, y1 = region
        axes[0].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="#e74c3c", lw=2))
    axes[0].set_title("image, the unit's region outlined", fontsize=8)
    im = axes[1].imshow(np.atleast_2d(act), cmap="viridis")
    axes[1].set_title("the unit's activation map", fontsize=8)
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.03).set_label("activation", fontsize=8)
    lim = float(np.abs(grad).max()) or 1.0
    im = axes[2].imshow(np.atleast_2d(grad), cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[2].set_title("its prediction gradient map", fontsize=8)
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.03).set_label(gradient_label, fontsize=8)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return save(fig, path)


def perturbation_strip(images: np.ndarray, labels: list[str], path: Path, *, title: str = "", max_panels: int = 11) -> Path:
    """Selected steps of a perturbation side by side."""
    idx = np.unique(np.linspace(0, len(images) - 1, min(max_panels, len(images))).round().astype(int))
    fig, axes = plt.subplots(1, len(idx), figsize=(1.6 * len(idx), 2.1), dpi=110, squeeze=False)
    for ax, i in zip(axes[0], idx, strict=True):
        show_image(ax, images[i])
        ax.set_title(labels[i], fontsize=6)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=8)
    return save(fig, path)


def matrix_figure(matrix: np.ndarray, names: list[str], path: Path, *, title: str = "", xlabel: str = "", ylabel: str = "",
                  label: str = "fraction") -> Path:
    """A labelled heat matrix in [0, 1] with the values written in; ``label`` names the colour bar.
    Empty cells (NaN) are grey and say "n/a"."""
    fig, ax = plt.subplots(figsize=(7.5, 6.5), dpi=110)
    cmap = plt.get_cmap("Greens").with_extremes(bad="#DDDDDD")
    im = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            v = matrix[i, j]
            ax.text(j, i, "n/a" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if not np.isnan(v) and v > 0.6 else "black")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.7, label=label)
    return save(fig, path)


def step_sweep_figure(step_sizes: list[float], success: list[float], induced: list[float], path: Path, *,
                      title: str = "", xlabel: str = "step size") -> Path:
    """Success at the target and induced error (share of images no longer correct) against the
    step size of a single gradient step (the thesis' Figs. 4.6 and 4.7 in one plot)."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.plot(step_sizes, success, "-o", color="#0072B2", label="success: predicted as the target class")
    ax.plot(step_sizes, induced, "--s", color="#D55E00", label="induced error: no longer the true class")
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of (image, target) pairs")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)
