"""Pictures of attributions for one image: input score maps per class, filter score bars."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["filter_bars", "input_score_grid"]


def input_score_grid(image: np.ndarray, maps: list[tuple[str, np.ndarray]], path: Path, *, title: str = "") -> Path:
    """The image, then one score map per class: red positive, blue negative, each on its own
    symmetric scale, with the image's outline drawn over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(maps) + 1
    cols = min(n, 6)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.5 * rows), dpi=110, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].imshow(image, cmap="gray")
    axes[0, 0].set_title("image", fontsize=8)
    outline = image > 0.5 * image.max() if image.max() > 0 else image > 0
    for ax, (label, m) in zip(axes.ravel()[1:], maps, strict=False):
        lim = float(np.abs(m).max()) or 1.0
        ax.imshow(m, cmap="bwr", vmin=-lim, vmax=lim)
        ax.contour(outline.astype(float), levels=[0.5], colors="black", linewidths=0.6)
        ax.set_title(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def filter_bars(layers: list[tuple[str, np.ndarray]], path: Path, *, title: str = "") -> Path:
    """One bar chart per layer of per-filter scores (red positive, blue negative)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(layers), 1, figsize=(9, 2.3 * len(layers)), dpi=110, squeeze=False)
    for ax, (name, scores) in zip(axes[:, 0], layers, strict=True):
        colors = np.where(scores >= 0, "#c0392b", "#2e86c1")
        ax.bar(np.arange(len(scores)), scores, color=colors)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_ylabel(name, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("filter / unit index")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
