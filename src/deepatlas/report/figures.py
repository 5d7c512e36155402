"""PNG figures for audits and explanations (matplotlib with the Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import networkx as nx
import numpy as np

from deepatlas.report._save import save

if TYPE_CHECKING:
    from deepatlas.db.analytics import RunGraph
    from deepatlas.workflows.analysis import CommunityReport, OverlapReport

__all__ = ["class_community_graph", "heatmap_grid", "jaccard_mistakes_scatter"]


def jaccard_mistakes_scatter(ov: OverlapReport, path: Path, *, label_top: int = 12) -> Path:
    """Pairwise Jaccard (x) against pairwise mistakes (y), the most notable pairs labelled."""
    x = np.array([p["jaccard"] for p in ov.pairs])
    y = np.array([p["mistakes"] for p in ov.pairs])
    fig, ax = plt.subplots(figsize=(8, 6), dpi=110)
    ax.scatter(x, y, s=28, color="#3b6ea8", alpha=0.8)
    if len(x) > 1 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 10)
        ax.plot(xs, slope * xs + intercept, color="#c0392b", lw=1, ls="--")
    score = (x / (x.max() or 1)) + (y / (y.max() or 1))
    for i in np.argsort(-score)[:label_top]:
        p = ov.pairs[i]
        ax.annotate(f"{p['a']} / {p['b']}", (x[i], y[i]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel(f"Jaccard of class neuron sets ({_set_desc(ov.params)})")
    ax.set_ylabel("mistakes between the two classes (A as B + B as A)")
    ax.set_title(f"{ov.run}: Pearson r = {ov.stats.r:.2f} (p = {ov.stats.p_value:.2g}, {ov.stats.n_pairs} pairs)")
    ax.grid(alpha=0.3)
    return save(fig, path)


def _set_desc(params: dict[str, Any]) -> str:
    parts = []
    if params.get("top_k"):
        parts.append(f"top {params['top_k']}")
    if params.get("min_r") is not None:
        parts.append(f"r >= {params['min_r']}")
    return ", ".join(parts)


def class_community_graph(ov: OverlapReport, comm: CommunityReport, rg: RunGraph, path: Path) -> Path:
    """Classes as nodes coloured by Louvain community, edges weighted by Jaccard overlap."""
    g = nx.Graph()
    community_of = {}
    for c in comm.communities:
        for name in c["classes"]:
            community_of[name] = c["index"]
    for name in ov.class_names:
        g.add_node(name)
    for p in ov.pairs:
        if p["jaccard"] > 0:
            g.add_edge(p["a"], p["b"], weight=p["jaccard"])
    pos = nx.spring_layout(g, weight="weight", seed=0)
    fig, ax = plt.subplots(figsize=(8, 7), dpi=110)
    cmap = plt.get_cmap("tab10")
    colors = [cmap(community_of.get(n, 9) % 10) for n in g.nodes]
    widths = [1 + 8 * g.edges[e]["weight"] for e in g.edges]
    nx.draw_networkx_edges(g, pos, ax=ax, width=widths, alpha=0.4, edge_color="#555555")
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colors, node_size=900, edgecolors="black")
    nx.draw_networkx_labels(g, pos, ax=ax, font_size=8)
    ax.set_title(f"{ov.run}: classes coloured by Louvain community (modularity {comm.modularity:.3f}); "
                 "edge width = Jaccard", fontsize=9)
    ax.axis("off")
    return save(fig, path)


def heatmap_grid(maps: list[tuple[str, np.ndarray]], path: Path, *, columns: int = 5, title: str = "",
                 cmap: str = "bwr", vmin: float = -1.0, vmax: float = 1.0, label: str = "Pearson r with pixel") -> Path:
    """Image-shaped maps on one shared scale (default: pixel correlations, red +, blue -)."""
    n = len(maps)
    rows = max(1, (n + columns - 1) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), dpi=110, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    im = None
    for ax, (label, img) in zip(axes.ravel(), maps, strict=False):
        im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(label, fontsize=7)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label=label)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path, tight=False)
