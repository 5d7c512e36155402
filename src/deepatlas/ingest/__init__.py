"""From a model and a data set to the rows of a co-activation graph.

- :class:`ActivationRecorder`, :func:`default_layers`   capture by forward hooks (``capture``)
- :class:`CoMoments`, :class:`Confusion`                streaming statistics (``stats``)
- :func:`compute_coactivation`                          one pass (or one per row block) (``coactivation``)
- :class:`SparsifyParams`, :func:`select_pairs`         which pairs become edges (``pairs``)
- :func:`build_tables`, :func:`attribution_tables`      rows for the graph (``tables``)

Names are resolved on first use (PEP 562), so ``import deepatlas.ingest.pairs`` or a
read-only command never pays for torch.

Examples
--------
>>> from deepatlas.ingest import SparsifyParams
>>> SparsifyParams(min_abs_r=0.6).top_k
8
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ActivationRecorder",
    "CoMoments",
    "CoactivationResult",
    "Confusion",
    "LayerSpec",
    "SparsifyParams",
    "attribution_tables",
    "build_tables",
    "compute_coactivation",
    "default_layers",
    "select_pairs",
]

_WHERE = {
    "ActivationRecorder": "capture", "LayerSpec": "capture", "default_layers": "capture",
    "CoMoments": "stats", "Confusion": "stats",
    "CoactivationResult": "coactivation", "compute_coactivation": "coactivation",
    "SparsifyParams": "pairs", "select_pairs": "pairs",
    "attribution_tables": "tables", "build_tables": "tables",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'deepatlas.ingest' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"deepatlas.ingest.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
