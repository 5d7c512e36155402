"""Figures for the experiments: knockout curves and activate-only success."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from deepatlas.report._save import save

__all__ = ["activate_figure", "k_axis", "knockout_figure", "removal_figure"]


#: At most this many k values are written under the axis; more are ticked but only every so
#: often labelled (the first and the last always), so that no two labels touch.
MAX_K_LABELS = 12


def k_axis(ax: Any, ks: list[Any]) -> list[int]:
    """A base-2 log x axis ticked and labelled at exactly the ``ks`` drawn (0, 1, 2, 4, ... 64 sit
    evenly apart); k = 0, which no log axis holds, gets a linear stretch of one doubling's width
    (symlog, linear below 1). Returns the k values ticked."""
    ticks = sorted({int(k) for k in ks})
    if ticks and ticks[0] <= 0:
        # linscale is scaled by 1 / (1 - 1/base) in matplotlib: 0.5 makes 0 to 1 as wide as 1 to 2
        ax.set_xscale("symlog", base=2, linthresh=1, linscale=0.5)
    else:
        ax.set_xscale("log", base=2)
    if not ticks:
        return ticks
    where = ax.xaxis.get_transform().transform(np.array(ticks, dtype=float))
    span = float(where[-1] - where[0]) or 1.0
    shown: list[int] = []
    for i, k in enumerate(ticks):  # labels at least 1/MAX_K_LABELS of the range apart, the last kept
        if not shown or where[i] - where[ticks.index(shown[-1])] >= span / MAX_K_LABELS:
            shown.append(k)
        elif i == len(ticks) - 1:
            shown[-1] = k
    ax.set_xticks(ticks, [f"{k:,}" if k in shown else "" for k in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    return ticks


def knockout_figure(result: dict[str, Any], run: str, path: Path) -> Path:
    """Class error (solid) and overall error (dashed) as k grows: top, bottom, random +- std."""
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    by = result.get("by", "coactivation")
    what = {"pg": "class-averaged PG norm", "coactivation": "r", "influence": "influential score",
            "gradient": "stored prediction gradient"}.get(by, by)
    names = {"top": "strongest" if by == "pg" else "top", "bottom": "weakest" if by == "pg" else "bottom"}
    for name, color in (("top", "#D55E00"), ("bottom", "#0072B2")):
        cur = result[name]
        ax.plot(cur["k"], cur["class_error"], "-o", color=color, ms=3, label=f"{names[name]}-k: {result['class']} error")
        ax.plot(cur["k"], cur["error"], "--", color=color, lw=1, label=f"{names[name]}-k: overall error")
    rnd = result["random"]
    k = np.array(rnd["k"])
    m, s = np.array(rnd["class_error_mean"]), np.array(rnd["class_error_std"])
    ax.plot(k, m, "-o", color="#7f8c8d", ms=3, label=f"random-k: {result['class']} error (mean +- std)")
    ax.fill_between(k, m - s, m + s, color="#7f8c8d", alpha=0.25)
    ax.plot(k, rnd["error_mean"], "--", color="#7f8c8d", lw=1, label="random-k: overall error")
    ticks = k_axis(ax, [*result["top"]["k"], *result["bottom"]["k"], *rnd["k"]])
    scale = "log-2 scale from 1" if ticks and ticks[0] <= 0 else "log-2 scale"
    where = "all conv layers" if result["layer"] == "all" and by == "pg" else ("all layers" if result["layer"] == "all" else result["layer"])
    ax.set_xlabel(f"k: units knocked out in {where} ({scale})\n(ranked by {what} for {result['class']})", fontsize=9)
    ax.set_ylabel("error (fraction of images misclassified)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{run}: knockout of {result['class']}'s units")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)


def activate_figure(result: dict[str, Any], run: str, path: Path) -> Path:
    """Fraction of classes predicted when only their top-k units are driven, per k."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.plot(result["ks"], result["fraction_correct"], "-o", color="#009E73")
    ax.set_xlabel(f"k (top-k units of each class in {result['layer']} driven, all others 0)")
    ax.set_ylabel("fraction of classes predicted")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{run}: activate-only ({result['value']})")
    ax.grid(alpha=0.3)
    return save(fig, path)


def removal_figure(curve: dict[str, Any], title: str, path: Path, *, ylabel: str = "holding rate") -> Path:
    """A verdict's holding rate as units are removed in order, against random orders (mean +- std)."""
    k = np.array(curve["k"])
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.plot(k, curve["ordered"], "-", color="#D55E00", label="in order (least important first)")
    m, s = np.array(curve["random_mean"]), np.array(curve["random_std"])
    ax.plot(k, m, "-", color="#7f8c8d", label="random order (mean +- std)")
    ax.fill_between(k, m - s, m + s, color="#7f8c8d", alpha=0.25)
    ax.set_xlabel("units removed")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)
