"""Figures for the coupled factorisation: RMSE vs rank, spectra, latent images, unit loadings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from deepatlas.report._save import save

__all__ = ["factor_heatmaps", "latent_images", "rmse_figure", "spectra_figure"]


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


def factor_heatmaps(loadings: dict[str, torch.Tensor], path: Path) -> Path:
    """Per layer: units x factors loadings, each row scaled to its maximum."""
    fig, axes = plt.subplots(1, len(loadings), figsize=(2.6 * len(loadings), 5), dpi=110, squeeze=False)
    for ax, (name, q) in zip(axes[0], loadings.items(), strict=True):
        m = q.numpy()
        m = m / np.maximum(m.max(1, keepdims=True), 1e-12)
        im = ax.imshow(m, aspect="auto", cmap="viridis", interpolation="nearest", vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("factor", fontsize=8)
    axes[0, 0].set_ylabel("unit")
    fig.colorbar(im, ax=axes[0, -1], label="loading / the unit's largest loading")
    fig.suptitle("unit loadings of each factor, per layer", fontsize=10)
    return save(fig, path)
