"""The graph's data model as plain rows: node keys, edge tables, all rows of one Run.

Torch-free on purpose: ``ingest`` builds these rows, ``db`` writes and reads them, and a
command that only reads the graph imports this module without loading torch.

Rows are made when they are written, a batch at a time: a table is a :class:`LazyRows` (a
length and a function that makes the rows of a slice) and an edge table's columns may be
arrays of node indices (:class:`KeyColumn`) and numbers, so a run of a million edges costs its
arrays (tens of MB), never a million Python dicts. Keys are single strings scoped by the
ingest id (``Run.key``), so runs of several models coexist::

    Layer  {run}/layer/{name}      Neuron {run}/n/{layer}/{index}
    Class  {run}/class/{index}     Pixel  {run}/px/{channel}/{y}/{x}
    Experiment {run}/experiment/{token}
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

__all__ = [
    "EdgeTable",
    "GraphTables",
    "KeyColumn",
    "LazyRows",
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


def _plain(values: Any) -> list[Any]:
    """A slice of a column as plain Python values (numpy arrays via tolist)."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


class LazyRows(Sequence[dict[str, Any]]):
    """``n`` rows made on demand: ``make(start, stop)`` returns the dicts of that slice.

    Supports ``len``, slicing (what a batched writer takes), ``rows[i]`` and iteration (a
    chunk at a time).
    """

    chunk = 2_000

    def __init__(self, n: int, make: Callable[[int, int], list[dict[str, Any]]]) -> None:
        self.n, self.make = n, make

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            start, stop, step = i.indices(self.n)
            if step != 1:
                raise ValueError("LazyRows slices take step 1")
            return self.make(start, stop) if stop > start else []
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.make(i, i + 1)[0]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for start in range(0, self.n, self.chunk):
            yield from self.make(start, min(self.n, start + self.chunk))


class KeyColumn(Sequence[str]):
    """A column of node keys stored as indices into one list of keys (``keys[index[k]]``)."""

    def __init__(self, keys: Sequence[str], index: Any) -> None:
        self.keys, self.positions = keys, index

    def __len__(self) -> int:
        return len(self.positions)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            keys = self.keys
            return [keys[t] for t in _plain(self.positions[i])]
        return self.keys[int(self.positions[i])]


@dataclass
class EdgeTable:
    """Edges of one type between two labels, columnar.

    Attributes
    ----------
    rel : str
        Relationship type (from the writer's allow-list).
    src_label, dst_label : str
    src, dst : sequence of str
        Node keys (a list, or a :class:`KeyColumn` over an index array).
    props : dict of str to sequence
        Property columns, each as long as ``src`` (lists or numpy arrays).
    """

    rel: str
    src_label: str
    dst_label: str
    src: Sequence[str] = field(default_factory=list)
    dst: Sequence[str] = field(default_factory=list)
    props: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.src)

    def _make(self, start: int, stop: int) -> list[dict[str, Any]]:
        names = list(self.props)
        cols = [_plain(self.props[n][start:stop]) for n in names]
        src, dst = self.src[start:stop], self.dst[start:stop]
        return [{"a": a, "b": b, **dict(zip(names, vals, strict=True))} for a, b, *vals in zip(src, dst, *cols, strict=True)]

    def rows(self) -> LazyRows:
        """The rows ``{"a": src key, "b": dst key, prop: value ...}``, made a slice at a time."""
        return LazyRows(len(self), self._make)


@dataclass
class GraphTables:
    """All rows of one Run, grouped by label and relationship type (lists or :class:`LazyRows`)."""

    layers: Sequence[dict[str, Any]]
    neurons: Sequence[dict[str, Any]]
    classes: Sequence[dict[str, Any]]
    pixels: Sequence[dict[str, Any]]
    edges: list[EdgeTable]

    def node_counts(self) -> dict[str, int]:
        return {"Layer": len(self.layers), "Neuron": len(self.neurons), "Class": len(self.classes), "Pixel": len(self.pixels)}

    def edge_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.edges:
            counts[t.rel] = counts.get(t.rel, 0) + len(t)
        counts["IN_LAYER"] = len(self.neurons) + len(self.classes)
        return counts
