"""Two ways to store a run, one interface: :class:`BoltWriter` (transactions over Bolt, into any
database, atomically visible) and :class:`BulkWriter` (neo4j-admin's CSV import, only into an
empty local database). The ingest workflow picks one with :func:`run_writer` and calls
``check`` before any work and ``write`` at the end; both finish with the same count check
(:func:`deepatlas.db.runs.verify_counts`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from deepatlas.db.graph import Graph
from deepatlas.db.runs import RunInfo, write_run
from deepatlas.errors import UsageError
from deepatlas.rows import GraphTables

__all__ = ["BoltWriter", "BulkWriter", "RunWriter", "run_writer", "write_batch_size"]


class RunWriter(Protocol):
    """What the ingest workflow needs from a writer. ``timings`` collects named phases (the
    Bolt writer's ``clean-up`` of earlier generations of the name)."""

    timings: dict[str, float]

    def check(self, graph: Graph) -> None:
        """Refuse before any work when this writer cannot write into ``graph``'s database."""

    def write(self, graph: Graph, tables: GraphTables, *, key: str, name: str, run_props: dict[str, Any],
              model_props: dict[str, Any], progress: Callable[[int], None] | None = None) -> RunInfo:
        """Store the run; it is visible (``complete``) only when every row is in and counted."""


def write_batch_size() -> int:
    """Rows per write transaction: 5,000, or ``$DEEPATLAS_WRITE_BATCH`` (tuning; the fault tests
    use small ones to be sure a signal lands mid-write)."""
    text = os.environ.get("DEEPATLAS_WRITE_BATCH", "5000")
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"DEEPATLAS_WRITE_BATCH must be a positive integer, got {text[:20]!r}")
    return int(text)


@dataclass
class BoltWriter:
    """Batched UNWIND transactions (:func:`deepatlas.db.runs.write_run`). ``timings`` gets the
    time spent deleting earlier generations of the name (``clean-up``)."""

    batch_size: int = field(default_factory=write_batch_size)
    timings: dict[str, float] = field(default_factory=dict)

    def check(self, graph: Graph) -> None:
        return None

    def write(self, graph: Graph, tables: GraphTables, *, key: str, name: str, run_props: dict[str, Any],
              model_props: dict[str, Any], progress: Callable[[int], None] | None = None) -> RunInfo:
        return write_run(graph, tables, key=key, name=name, run_props=run_props, model_props=model_props,
                         batch_size=self.batch_size, progress=progress, timings=self.timings)


@dataclass
class BulkWriter:
    """neo4j-admin ``database import full`` of typed CSVs (:func:`deepatlas.db.bulk.bulk_import`):
    the managed local server is stopped for the import and started again."""

    timings: dict[str, float] = field(default_factory=dict)

    def check(self, graph: Graph) -> None:
        from deepatlas.db.bulk import check_bulk_target

        check_bulk_target(graph)

    def write(self, graph: Graph, tables: GraphTables, *, key: str, name: str, run_props: dict[str, Any],
              model_props: dict[str, Any], progress: Callable[[int], None] | None = None) -> RunInfo:
        from deepatlas.db.bulk import bulk_import
        from deepatlas.db.server import LocalServer

        return bulk_import(graph, LocalServer(), tables, key=key, name=name, run_props=run_props, model_props=model_props)


def run_writer(bulk: bool) -> RunWriter:
    """:class:`BulkWriter` when ``bulk``, else :class:`BoltWriter`."""
    return BulkWriter() if bulk else BoltWriter()
