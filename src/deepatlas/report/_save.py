"""The one way a figure leaves the report package: laid out, written, closed."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def save(fig: Figure, path: Path, *, tight: bool = True, bbox_inches: str | None = None) -> Path:
    """Write ``fig`` to ``path`` (its folder created), close it, and return ``path``.

    ``tight=False`` keeps a layout the caller set itself (e.g. a shared colour bar);
    ``bbox_inches="tight"`` grows the saved area to everything drawn (legends outside the axes).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, bbox_inches=bbox_inches)
    plt.close(fig)
    return path
