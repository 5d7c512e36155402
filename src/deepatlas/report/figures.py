"""PNG figures for audits and explanations (matplotlib with the Agg backend)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import networkx as nx
import numpy as np

from deepatlas.db.runs import correlation_name
from deepatlas.report._save import save

__all__ = ["CommunitiesLike", "OverlapLike", "class_community_graph", "heatmap_grid", "jaccard_mistakes_scatter",
           "notable_classes", "title_chars", "wrap_title"]


class OverlapLike(Protocol):
    """What the overlap figures read (e.g. :class:`deepatlas.workflows.analysis.OverlapReport`;
    report/ imports nothing above it)."""

    run: str
    params: dict[str, Any]
    pairs: list[dict[str, Any]]
    class_names: list[str]
    stats: Any  # .r, .p_value, .n_pairs


class CommunitiesLike(Protocol):
    """What the community figure reads (e.g. :class:`deepatlas.workflows.analysis.CommunityReport`)."""

    modularity: float
    communities: list[dict[str, Any]]
    params: dict[str, Any]


def jaccard_mistakes_scatter(ov: OverlapLike, path: Path, *, label_top: int = 12) -> Path:
    """Pairwise Jaccard (x) against pairwise mistakes (y), the most notable pairs labelled.

    Pairs on one spot are one marker whose area says how many, and its label "A / B (+k)" the
    count too (Jaccard takes few
    values and mistakes are counts, so many pairs coincide; those sharing no neuron, at x = 0,
    are grey and counted in the legend). Pairs not listed at all (zero on both sides, among
    more than 100 classes) are counted in the title; the least-squares line is drawn only when
    every pair is listed (it is the line of the correlation the title reports).
    """
    x = np.array([p["jaccard"] for p in ov.pairs])
    y = np.array([p["mistakes"] for p in ov.pairs])
    fig, ax = plt.subplots(figsize=(8, 6), dpi=110)
    # pairs on the same spot (Jaccard takes few values, mistakes are counts) are one marker
    # whose area says how many
    spots: dict[tuple[float, int], list[int]] = {}
    for i, key in enumerate(zip(np.round(x, 9).tolist(), y.tolist(), strict=True)):
        spots.setdefault(key, []).append(i)
    sx = np.array([k[0] for k in spots])
    sy = np.array([k[1] for k in spots])
    count = np.array([len(v) for v in spots.values()])
    area = 24 + 70 * np.log10(count)  # 1 pair: 24; 10: 94; 1,000: 234; 100,000: 374
    zero = sx == 0
    ax.scatter(sx[~zero], sy[~zero], s=area[~zero], color="#0072B2", alpha=0.75, edgecolors="white", linewidths=0.5,
               label="pairs of classes (area: how many on that spot)")
    if zero.any():
        ax.scatter(sx[zero], sy[zero], s=area[zero], color="#999999", alpha=0.75, edgecolors="white", linewidths=0.5,
                   label=f"{int(count[zero].sum()):,} pairs sharing no neuron (Jaccard 0)")
    complete = ov.stats.n_pairs == len(ov.pairs)
    if complete and len(x) > 1 and np.ptp(x) > 0:  # the line of the correlation reported (over every pair)
        slope, intercept = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 10)
        ax.plot(xs, slope * xs + intercept, color="#D55E00", lw=1, ls="--", label="least-squares line")
    score = (x / (x.max() or 1)) + (y / (y.max() or 1))
    placed: list[tuple[float, float]] = []  # normalised anchors of the labels so far
    labelled: set[tuple[float, int]] = set()
    for i in np.argsort(-score, kind="stable"):
        key = (round(float(x[i]), 9), int(y[i]))
        if key in labelled or len(labelled) >= label_top:
            continue  # one label per spot: "A / B (+k)" names one pair of the spot
        labelled.add(key)
        p = ov.pairs[i]
        others = len(spots[key]) - 1
        nx_, ny_ = x[i] / (x.max() or 1), y[i] / (y.max() or 1)
        crowd = sum(1 for a, b in placed if abs(a - nx_) < 0.12 and abs(b - ny_) < 0.03)
        placed.append((nx_, ny_))
        ax.annotate(f"{p['a']} / {p['b']}" + (f" (+{others:,})" if others else ""), (x[i], y[i]), fontsize=8,
                    xytext=(8, 3 - 10 * crowd), textcoords="offset points",
                    arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "#888888"} if crowd else None)
    ax.set_ylim(bottom=min(-0.5, float(y.min()) - 0.5) if len(y) else -0.5)
    ax.set_xlabel(f"Jaccard of class neuron sets ({_set_desc(ov.params)})")
    ax.set_ylabel("mistakes between the two classes (images: A as B + B as A)")
    legend = ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    for handle in legend.legend_handles:  # legend markers of one size, whatever the spots' areas
        set_sizes = getattr(handle, "set_sizes", None)
        if set_sizes is not None:
            set_sizes([30])
    unlisted = ov.stats.n_pairs - len(ov.pairs)
    ax.set_title(f"{ov.run}: do classes that share neurons get confused with each other?\n"
                 f"Pearson r = {ov.stats.r:.2f} (p = {ov.stats.p_value:.2g}, {ov.stats.n_pairs:,} class pairs)"
                 + (f"\n{unlisted:,} pairs with no shared neuron and no mistake are not drawn" if unlisted else ""),
                 fontsize=10)
    ax.grid(alpha=0.3)
    return save(fig, path, bbox_inches="tight")  # the legend below the axes stays in


def _set_desc(params: dict[str, Any]) -> str:
    parts = []
    if params.get("top_k"):
        parts.append(f"top {params['top_k']}")
    if params.get("min_r") is not None:
        parts.append(f"r >= {params['min_r']}")
    return ", ".join(parts)


#: Okabe & Ito's colour-blind-safe qualitative palette (the black last); markers double the cue.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "p")


def notable_classes(ov: OverlapLike, most: int) -> list[str]:
    """At most ``most`` classes, in class order: those of the pairs that overlap most and of those
    confused most, alternately (all classes when there are no more than ``most``)."""
    if len(ov.class_names) <= most:
        return list(ov.class_names)
    by_overlap = sorted(ov.pairs, key=lambda p: (-p["jaccard"], -p["mistakes"]))
    by_mistakes = sorted(ov.pairs, key=lambda p: (-p["mistakes"], -p["jaccard"]))
    chosen: list[str] = []
    for a, b in zip(by_overlap, by_mistakes, strict=True):
        for p in (a, b):
            for name in (p["a"], p["b"]):
                if name not in chosen and len(chosen) < most:
                    chosen.append(name)
        if len(chosen) >= most:
            break
    position = {n: i for i, n in enumerate(ov.class_names)}
    return sorted(chosen, key=position.__getitem__)


def class_community_graph(ov: OverlapLike, comm: CommunitiesLike, path: Path, *, most: int = 30) -> Path:
    """Classes grouped by the community of the co-activation graph they fall in.

    Each community with classes gets its own colour and marker (Okabe-Ito, colour-blind safe)
    and its own place on a circle; its classes sit together around that place, so classes
    of one community are always next to each other. Edges: Jaccard overlap of the classes'
    neuron sets (width and darkness grow with it). Labels sit outside the nodes on a white box.
    More than ``most`` classes (ImageNet's 1,000): only the classes of the most overlapping and
    most confused pairs (:func:`notable_classes`), as the title says.
    """
    shown = notable_classes(ov, most)
    community_of: dict[str, int] = {}
    for c in comm.communities:
        for name in c["classes"]:
            community_of[name] = c["index"]
    groups: dict[int, list[str]] = {}
    for name in shown:
        groups.setdefault(community_of.get(name, -1), []).append(name)
    order = sorted(groups, key=lambda k: (k < 0, k))
    size_of = {c["index"]: c["size"] for c in comm.communities}
    pos: dict[str, np.ndarray] = {}
    away: dict[str, np.ndarray] = {}  # where each label goes: out of its own group, else out of the middle
    n_groups = len(order)
    for gi, k in enumerate(order):
        angle = np.pi / 2 - 2 * np.pi * gi / n_groups
        centre = np.array([np.cos(angle), np.sin(angle)]) * (0.0 if n_groups == 1 else 1.0)
        members = groups[k]
        radius = 0.0 if len(members) == 1 else 0.22 + 0.03 * len(members)
        for mi, name in enumerate(members):
            a = angle + 2 * np.pi * mi / len(members)
            pos[name] = centre + radius * np.array([np.cos(a), np.sin(a)])
            away[name] = pos[name] - centre if radius > 0 else pos[name]
    g = nx.Graph()
    g.add_nodes_from(shown)
    for p in ov.pairs:
        if p["jaccard"] > 0 and p["a"] in pos and p["b"] in pos:
            g.add_edge(p["a"], p["b"], weight=p["jaccard"])
    fig, ax = plt.subplots(figsize=(8.5, 9), dpi=110)
    wmax = max((g.edges[e]["weight"] for e in g.edges), default=1.0) or 1.0
    for a, b in g.edges:
        w = g.edges[a, b]["weight"]
        ax.plot(*zip(pos[a], pos[b], strict=True), color="#444444", lw=0.5 + 6 * w / wmax, alpha=0.15 + 0.6 * w / wmax,
                zorder=1, solid_capstyle="round")
    handles: list[Any] = []
    for gi, k in enumerate(order):
        color = OKABE_ITO[gi % len(OKABE_ITO)] if k >= 0 else "#BBBBBB"
        marker = MARKERS[gi % len(MARKERS)]
        xy = np.array([pos[n] for n in groups[k]])
        label = (f"community {k}: {len(groups[k])} of the classes, {size_of.get(k, 0)} nodes" if k >= 0
                 else "in no community")
        handles.append(ax.scatter(xy[:, 0], xy[:, 1], s=420, c=color, marker=marker, edgecolors="black",
                                  linewidths=1.0, zorder=3, label=label))
    for name, xy in pos.items():
        out = away[name] / (np.linalg.norm(away[name]) or 1.0)  # beside the node, away from its neighbours
        crowded = len(groups[community_of.get(name, -1)]) > 8  # centred labels at the top and bottom would touch
        ha = "left" if out[0] > (0.0 if crowded else 0.35) else "right" if out[0] < (0.0 if crowded else -0.35) else "center"
        dx = 14 * np.sign(out[0]) if ha != "center" else 0.0
        dy = 16 * out[1] if ha != "center" else 18 * (1 if out[1] >= 0 else -1)
        ax.annotate(name, (float(xy[0]), float(xy[1])), xytext=(dx, dy), textcoords="offset points", ha=ha,
                    va="center", fontsize=10, zorder=4,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85})
    from matplotlib.lines import Line2D

    for w in (0.25 * wmax, wmax):
        handles.append(Line2D([], [], color="#444444", lw=0.5 + 6 * w / wmax, alpha=0.15 + 0.6 * w / wmax,
                              label=f"Jaccard {w:.2f}"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False,
              markerscale=0.5, title="colour and marker: community (nodes = neurons + classes in it); "
              "line: neuron-set overlap", title_fontsize=8)
    algorithm = comm.params.get("algorithm", "louvain")
    subset = (f"; the {len(shown)} classes of the most overlapping and most confused pairs, of {len(ov.class_names):,}"
              if len(shown) < len(ov.class_names) else "")
    on = {"complete": "the complete correlation graph", "stored": "the stored COACTIVATES edges"}.get(
        getattr(comm, "graph", "stored"), "the co-activation graph")
    if getattr(comm, "correlation", "pearson") == "spearman":
        on += f" ({correlation_name('spearman')})"
    ax.set_title(f"{ov.run}: classes by {algorithm} community of {on}\n"
                 f"(modularity {comm.modularity:.3f}; lines: Jaccard of the classes' neuron sets, "
                 f"{_set_desc(ov.params) or 'all'}{subset})", fontsize=10)
    ax.set_aspect("equal")
    ax.margins(0.18)
    ax.axis("off")
    return save(fig, path, bbox_inches="tight")  # the title and the legend below the axes stay in


#: Average width of a character of the default sans-serif font, in ems (lower case and digits,
#: rounded up), for fitting titles to a panel before anything is drawn.
CHAR_EM = 0.62


def title_chars(width_in: float, fontsize: float) -> int:
    """How many characters of ``fontsize`` points fit in ``width_in`` inches."""
    return max(8, int(width_in * 72 / (fontsize * CHAR_EM)))


def wrap_title(text: str, width: int, *, max_lines: int = 3) -> str:
    """``text`` in lines of at most ``width`` characters: broken after ": " first (a class from
    its unit), then at spaces and the dots, slashes and underscores of layer names; a word longer
    than a line is cut. Past ``max_lines`` the middle goes ("..."): the first line and the end,
    where a unit's index is, stay."""
    if len(text) <= width:
        return text
    head, sep, tail = text.partition(": ")
    parts = [head + ":", tail] if sep else [text]
    lines: list[str] = []
    for part in parts:
        line = ""
        for token in re.split(r"(?<=[ ./_])", part):
            while len(token) > width:  # a word longer than a line: cut
                if line:
                    lines.append(line.rstrip())
                    line = ""
                lines.append(token[:width])
                token = token[width:]
            if line and len(line.rstrip()) + len(token.rstrip()) > width:
                lines.append(line.rstrip())
                line = ""
            line += token
        if line.strip():
            lines.append(line.rstrip())
    if len(lines) > max_lines:
        end = lines[len(lines) - (max_lines - 1):]
        end[0] = "..." + end[0][3:] if len(end[0]) + 3 > width else "..." + end[0]
        lines = [lines[0], *end] if max_lines > 1 else end
    return "\n".join(lines)


def heatmap_grid(maps: list[tuple[str, np.ndarray]], path: Path, *, columns: int = 5, title: str = "",
                 cmap: str = "RdBu_r", vmin: float = -1.0, vmax: float = 1.0,
                 label: str = "Pearson r (unit vs pixel, over the run's images)") -> Path:
    """Image-shaped maps on one shared scale (default: pixel correlations, red +, blue -, a
    colour-blind-safe diverging map); ``label`` names the colour bar's quantity.

    Panel titles are wrapped to the panel's width (:func:`wrap_title`: "class #1:" on one line,
    a long layer name broken at its dots, the unit index kept) and the rows are spaced for them,
    so the titles of neighbouring panels never run into each other."""
    n = len(maps)
    columns = max(1, min(columns, n))
    rows = max(1, (n + columns - 1) // columns)
    panel, fontsize = 2.2, 8
    titles = [wrap_title(name, title_chars(panel - 0.15, fontsize)) for name, _ in maps]
    lines = max((t.count("\n") + 1 for t in titles), default=1)
    # room for the colour bar and its label beside even a single map, and for the titles' lines
    fig, axes = plt.subplots(rows, columns, figsize=(panel * columns + 1.4, (panel + 0.17 * lines) * rows + 0.5),
                             dpi=110, squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    im = None
    for ax, text, (_, img) in zip(axes.ravel(), titles, maps, strict=False):
        im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(text, fontsize=fontsize)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.9 if rows == 1 else 0.6, label=label)
    if title:  # the layout keeps it above the panel titles
        fig.suptitle(title, fontsize=10)
    return save(fig, path, tight=False, bbox_inches="tight")  # nothing drawn is cut at the edge
