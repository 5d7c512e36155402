"""The graph's data model as plain rows: node keys, edge tables, all rows of one Run.

Torch-free on purpose: ``ingest`` builds these rows, ``db`` writes and reads them, and a
command that only reads the graph imports this module without loading torch. Keys are single
strings scoped by the ingest id (``Run.key``), so runs of several models coexist::

    Layer  {run}/layer/{name}      Neuron {run}/n/{layer}/{index}
    Class  {run}/class/{index}     Pixel  {run}/px/{channel}/{y}/{x}
    Experiment {run}/experiment/{token}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EdgeTable",
    "GraphTables",
    "class_key",
    "community_key",
    "experiment_key",
    "layer_key",
    "neuron_key",
    "pixel_key",
]


def layer_key(run: str, name: str) -> str:
    return f"{run}/layer/{name}"


def neuron_key(run: str, layer: str, index: int) -> str:
    return f"{run}/n/{layer}/{index}"


def class_key(run: str, index: int) -> str:
    return f"{run}/class/{index}"


def community_key(run: str, index: int) -> str:
    return f"{run}/community/{index}"


def experiment_key(run: str, token: str) -> str:
    return f"{run}/experiment/{token}"


def pixel_key(run: str, channel: int, y: int, x: int) -> str:
    return f"{run}/px/{channel}/{y}/{x}"


@dataclass
class EdgeTable:
    """Edges of one type between two labels, columnar.

    Attributes
    ----------
    rel : str
        Relationship type (from the writer's allow-list).
    src_label, dst_label : str
    src, dst : list of str
        Node keys.
    props : dict of str to list
        Property columns, each as long as ``src``.
    """

    rel: str
    src_label: str
    dst_label: str
    src: list[str] = field(default_factory=list)
    dst: list[str] = field(default_factory=list)
    props: dict[str, list[Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.src)

    def rows(self) -> list[dict[str, Any]]:
        names = list(self.props)
        cols = [self.props[n] for n in names]
        return [{"a": a, "b": b, **dict(zip(names, vals, strict=True))} for a, b, *vals in zip(self.src, self.dst, *cols, strict=True)]


@dataclass
class GraphTables:
    """All rows of one Run, grouped by label and relationship type."""

    layers: list[dict[str, Any]]
    neurons: list[dict[str, Any]]
    classes: list[dict[str, Any]]
    pixels: list[dict[str, Any]]
    edges: list[EdgeTable]

    def node_counts(self) -> dict[str, int]:
        return {"Layer": len(self.layers), "Neuron": len(self.neurons), "Class": len(self.classes), "Pixel": len(self.pixels)}

    def edge_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.edges:
            counts[t.rel] = counts.get(t.rel, 0) + len(t)
        counts["IN_LAYER"] = len(self.neurons) + len(self.classes)
        return counts
