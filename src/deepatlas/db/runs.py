"""Runs in the graph: write one atomically-visible, list, resolve, delete.

Life of a Run (``status``):

``running``   created first, before any of its rows; readers ignore it.
``complete``  set only after every row is in and the counts in the database equal the
              tables'; in the same transaction any earlier complete run with the same name
              becomes ``replaced``, so a re-ingest swaps the whole run at once, never a mix.
``failed``    set when anything breaks; the partial rows are deleted (best effort), and a
              later ingest of the same name deletes any that remain.
``replaced``  an older generation; its rows are deleted right after the swap.

``Run.key`` is the ingest id (``{name}@{8 hex}``) every node of the run carries; ``Run.name``
is what users type (``--run``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepatlas.db.graph import Graph
from deepatlas.db.schema import RUN_LABELS, SCHEMA, check_label, check_rel
from deepatlas.db.templates import cypher
from deepatlas.errors import (
    CheckpointError,
    DeepAtlasError,
    GraphError,
    GraphUnavailable,
    NotFoundError,
    UsageError,
)
from deepatlas.rows import EdgeTable, GraphTables

log = logging.getLogger(__name__)

__all__ = ["RunInfo", "delete_run", "ensure_schema", "find_run", "last_run", "list_runs", "new_run_key", "remember_run", "resolve_run", "rows_per_batch", "run_model_row", "write_run", "written_run"]

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True)
class RunInfo:
    """A Run node as read back."""

    key: str
    name: str
    status: str
    model: str | None
    dataset: str | None
    split: str | None
    n_samples: int | None
    accuracy: float | None
    created_at: str | None
    completed_at: str | None
    params: dict[str, Any]
    counts: dict[str, Any]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RunInfo:
        r = row["r"]
        return cls(
            key=r["key"], name=r["name"], status=r["status"], model=r.get("model"), dataset=r.get("dataset"),
            split=r.get("split"), n_samples=r.get("n_samples"), accuracy=r.get("accuracy"),
            created_at=str(r.get("created_at")) if r.get("created_at") is not None else None,
            completed_at=str(r.get("completed_at")) if r.get("completed_at") is not None else None,
            params=json.loads(r.get("params") or "{}"), counts=json.loads(r.get("counts") or "{}"),
        )

    @property
    def correlation(self) -> str:
        """The run's co-activation weight: "pearson" (also runs from before the choice existed) or "spearman"."""
        return str(self.params.get("correlation", "pearson"))


#: How each correlation is named beside the numbers it gives (tables, titles, figures).
CORRELATION_NAMES = {"pearson": "Pearson r", "spearman": "Spearman's rho"}


def correlation_name(kind: str) -> str:
    """``"Pearson r"`` or ``"Spearman's rho"``: what the r of a run with this correlation is."""
    return CORRELATION_NAMES.get(kind, kind)


def validate_run_name(name: str) -> str:
    if not name or len(name) > 100 or not set(name) <= _NAME_CHARS:
        raise UsageError(f"run name {name!r} must be 1-100 characters of letters, digits, '-', '_' and '.'")
    return name


def new_run_key(name: str) -> str:
    return f"{validate_run_name(name)}@{uuid.uuid4().hex[:8]}"


def ensure_schema(graph: Graph) -> None:
    """Create every constraint and index (``IF NOT EXISTS``) before the first write."""
    for statement in SCHEMA:
        graph.write(statement)


_NODE_WRITES = {
    "Layer": cypher("write_layers"),
    "Neuron": (
        cypher("write_neurons")
    ),
    "Class": (
        cypher("write_classes")
    ),
    "Pixel": cypher("write_pixels"),
}


def _edge_query(table: EdgeTable) -> str:
    """UNWIND-CREATE for one (type, source label, target label); names from the allow-list.

    CREATE, not MERGE: a run's id is new on every ingest and each batch is one transaction
    that the driver retries whole, so an edge cannot be written twice.
    """
    src, dst, rel = check_label(table.src_label), check_label(table.dst_label), check_rel(table.rel)
    assigns = ", ".join(f"e.{p} = row.{p}" for p in table.props if p.isidentifier())
    sets = f"SET {assigns}" if assigns else ""
    return (
        cypher("write_edges", src=src, dst=dst, rel=rel, sets=sets)
    )


def write_run(
    graph: Graph,
    tables: GraphTables,
    *,
    key: str,
    name: str,
    run_props: dict[str, Any],
    model_props: dict[str, Any],
    batch_size: int = 5_000,
    progress: Callable[[int], None] | None = None,
    timings: dict[str, float] | None = None,
) -> RunInfo:
    """Write one run; it becomes visible (``complete``) only when every row is in.

    Parameters
    ----------
    graph : Graph
    tables : GraphTables
    key : str
        New ingest id from :func:`new_run_key`.
    name : str
        The user-facing run name.
    run_props : dict
        dataset, split, n_samples, accuracy, params (dict), confusion (list of lists), ...
    model_props : dict
        key (weights sha256), name, arch, accuracy, path.
    batch_size : int, default 5000
    progress : callable, optional
        Called with the number of rows after each batch.
    timings : dict, optional
        Receives ``"clean-up"``: seconds spent deleting earlier generations of ``name``
        (leftovers before the write, the replaced run after it), so a caller can tell the
        write's own rate apart.

    Raises
    ------
    GraphError
        The server failed or the stored counts do not match; the run is marked ``failed``.
    """
    need = write_size_mb(tables.node_counts(), tables.edge_counts())
    _check_free_space(graph, need)
    progress = _watch_disk(graph, progress)
    ensure_schema(graph)
    t_clean = time.perf_counter()
    _purge_unfinished(graph, name)  # refuses while another live process writes this name
    cleaning = time.perf_counter() - t_clean
    props = {k: property_value(v) for k, v in run_props.items()}
    expected_nodes = tables.node_counts()
    expected_edges = tables.edge_counts()
    props["counts"] = json.dumps({"nodes": expected_nodes, "edges": expected_edges})
    graph.write(
        cypher("create_running_run"),
        {"key": key, "name": name, "props": props, "model": model_props, "writer": WRITER},
    )
    started = time.perf_counter()
    try:
        _claim(graph, key, name)
        for label, rows in (("Layer", tables.layers), ("Neuron", tables.neurons), ("Class", tables.classes), ("Pixel", tables.pixels)):
            graph.write_batches(_NODE_WRITES[label], rows, batch_size=rows_per_batch(rows, batch_size), progress=progress)
            _heartbeat(graph, key)
        for table in tables.edges:
            graph.write_batches(_edge_query(table), table.rows(), batch_size=batch_size, progress=progress)
            _heartbeat(graph, key)
        verify_counts(graph, key, expected_nodes, expected_edges)
        rows = graph.write(
            cypher("complete_run"),  # no row if r is gone
            {"key": key, "seconds": time.perf_counter() - started},
        )
        if not rows:
            raise GraphError(f"run {key} vanished while it was written (deleted by another process?)")
    except BaseException as exc:
        _mark_failed(graph, key, exc)
        raise
    t_clean = time.perf_counter()
    for old in rows[0]["replaced"]:
        try:
            _delete_run_data(graph, old)
        except DeepAtlasError as exc:
            # the new run is complete and the old one invisible: its rows are purged by the next
            # ingest of this name (or `deepatlas runs delete`); do not report the ingest failed
            log.warning("run %s is complete; clearing the replaced run %s failed (%s); the next ingest of %r retries",
                        key, old, str(exc).splitlines()[0], name)
    if timings is not None:
        timings["clean-up"] = cleaning + time.perf_counter() - t_clean
    return written_run(graph, name)


def written_run(graph: Graph, name: str) -> RunInfo:
    """The run just written, read back (not remembered as the default: the ingest decides)."""
    found = find_run(graph, name)
    if found is None:
        raise NotFoundError(f"run {name!r} was written but is not complete; `deepatlas runs list` shows its state")
    return found


#: Bytes of list properties one write transaction may carry. Neuron and Class rows hold their
#: pixel correlations (a 3x37x37 grid: 4,107 floats, 33 KB a row); 5,000 such rows in one
#: transaction exceeded Neo4j's default transaction memory (716.8 MiB) on a ResNet-18 run.
BATCH_PAYLOAD_BYTES = 32 * 2**20


def rows_per_batch(rows: Sequence[dict[str, Any]], batch_size: int) -> int:
    """``batch_size``, lowered so one batch of ``rows`` carries at most BATCH_PAYLOAD_BYTES of
    list properties (8 bytes a number; the first row stands for all)."""
    if not rows:
        return batch_size
    row_bytes = 200 + 8 * sum(len(v) for v in rows[0].values() if isinstance(v, list | tuple))
    return max(1, min(batch_size, BATCH_PAYLOAD_BYTES // row_bytes))


def property_value(value: Any) -> Any:
    """Neo4j stores scalars and flat lists of scalars; dicts and nested lists go in as JSON."""
    if isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, (list, dict)) for v in value)):
        return json.dumps(value)
    return value


def verify_counts(graph: Graph, key: str, nodes: dict[str, int], edges: dict[str, int]) -> None:
    for label, n in nodes.items():
        got = graph.read(cypher("count_nodes", label=check_label(label)), {"key": key})[0]["c"]
        if got != n:
            raise GraphError(f"run {key}: {got} {label} nodes stored, {n} expected")
    stored: dict[str, int] = {}
    for label in ("Neuron", "Class", "Pixel"):
        for row in graph.read(
            cypher("count_edges_by_type", label=label), {"key": key}
        ):
            stored[row["t"]] = stored.get(row["t"], 0) + row["c"]
    for rel, n in edges.items():
        if stored.get(rel, 0) != n:
            raise GraphError(f"run {key}: {stored.get(rel, 0)} {rel} edges stored, {n} expected")


def _mark_failed(graph: Graph, key: str, exc: BaseException) -> None:
    """Best effort: flag the run failed and remove its partial rows. Never masks ``exc``.

    When the server itself is gone there is nothing to do (each attempt would only wait out
    the driver's retries): the run stays ``running``, invisible to readers, and the next
    ingest of the same name deletes it.
    """
    if isinstance(exc, GraphUnavailable):
        return
    reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        reason = "interrupted"
        from deepatlas import stopping

        stopping.cleanup_begins()  # this is what the stop asked for: let it finish
    try:
        graph.write(cypher("mark_failed"), {"key": key, "reason": reason})
        _delete_run_data(graph, key, keep_run=True)
    except Exception:  # the server is gone or the session broke mid-write: never mask exc
        pass  # the run stays invisible; the next ingest of this name cleans up


#: Who writes: ``host:pid``, stored on a running Run with a heartbeat refreshed after every table.
WRITER = f"{socket.gethostname()}:{os.getpid()}"
#: A running run whose writer cannot be asked (another host) is abandoned after this long silent.
STALE_SECONDS = 600


def _writer_alive(writer: str | None, age_seconds: float | None) -> bool:
    """Is the process that owns a running run still at it? On this host: its pid exists; on
    another host: its heartbeat is younger than :data:`STALE_SECONDS`."""
    if not writer or age_seconds is None:
        return False
    host, _, pid = writer.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return False  # our own leftovers (an earlier ingest in this process that died)
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return age_seconds < STALE_SECONDS * 6  # a pid reused long after is not the writer
    return age_seconds < STALE_SECONDS


def _running(graph: Graph, name: str) -> list[dict[str, Any]]:
    return graph.read(
        cypher("unfinished_runs"), {"name": name})


def _purge_unfinished(graph: Graph, name: str) -> None:
    """Delete leftovers (running/failed/replaced) of earlier ingests of ``name``; a run that a
    live process is still writing is left alone and this ingest refused.

    Raises
    ------
    UsageError
        Another live process is writing ``name``.
    """
    for row in _running(graph, name):
        if row["status"] == "running" and _writer_alive(row["writer"], row["age"]):
            raise UsageError(f"run {name} is being written by process {row['writer']}; wait for it or pick another name")
        _delete_run_data(graph, row["key"])


def _claim(graph: Graph, key: str, name: str) -> None:
    """After creating our running Run: if another live writer created one of the same name
    first (a race past :func:`_purge_unfinished`), we are the loser and stop."""
    for row in _running(graph, name):
        if row["key"] == key or row["status"] != "running" or not _writer_alive(row["writer"], row["age"]):
            continue
        ours = graph.read(cypher("run_created_at"), {"key": key})[0]["created"]
        if (row["created"], row["key"]) < (ours, key):
            raise UsageError(f"run {name} is being written by process {row['writer']}; wait for it or pick another name")


#: What one stored row costs on disk, in bytes, store and indexes together, rounded up from a
#: working database (2026-12: 26 runs, 6.6M edges and 0.2M nodes in a 3.4 GB store: 520 B per
#: row, an upper bound, since replaced runs leave holes the store reuses), plus the transaction
#: log's copy of the write. Neuron and Class rows carry list properties, hence the larger node.
NODE_BYTES, EDGE_BYTES = 2_048, 640


def write_size_mb(nodes: dict[str, int], edges: dict[str, int]) -> float:
    """The disk one run's write takes, store and transaction log (see :data:`NODE_BYTES`)."""
    return (sum(nodes.values()) * NODE_BYTES + sum(edges.values()) * EDGE_BYTES) / 2**20


def _check_free_space(graph: Graph, need_mb: float = 0.0) -> None:
    """Stop before writing when the managed server's disk would fall below the margin with this
    write on it: a full disk breaks the transaction log, the database then does not come back
    by itself, and every earlier run in it is out of reach."""
    if not graph.settings.managed:
        return  # another server's disk is not ours to see
    from deepatlas.db.server import LocalServer, min_free_mb

    server = LocalServer()
    free, margin = server.free_mb(), min_free_mb()
    if free is not None and free - need_mb < margin:
        raise GraphError(f"the disk that holds {server.home} has {free:,.0f} MB free; this run needs about {need_mb:,.0f} MB "
                         f"and {margin:,.0f} MB must stay free (DEEPATLAS_MIN_FREE_MB); free some space or store fewer edges "
                         "(--max-edges), then ingest again. Nothing was written.")


def _watch_disk(graph: Graph, progress: Callable[[int], None] | None) -> Callable[[int], None] | None:
    """``progress``, checking after every batch that the disk still holds the margin (something
    else may be filling it): the write stops, and the run is marked failed and removed, while
    the transaction log still has room; the earlier runs stay as they were."""
    if not graph.settings.managed:
        return progress
    from deepatlas.db.server import LocalServer, min_free_mb

    server, margin = LocalServer(), min_free_mb()

    def watched(rows: int) -> None:
        free = server.free_mb()
        if free is not None and free < margin / 2:
            raise GraphError(f"stopped writing: the disk that holds {server.home} is down to {free:,.0f} MB free (something "
                             f"else is filling it); this run is removed, earlier runs are intact. Free space, then ingest again")
        if progress is not None:
            progress(rows)

    return watched


def _heartbeat(graph: Graph, key: str) -> None:
    graph.write(cypher("heartbeat"), {"key": key})


def _delete_run_data(graph: Graph, key: str, *, keep_run: bool = False) -> int:
    """Delete a run's rows in bounded transactions: relationships first, then the nodes.

    Relationships go 10,000 at a time: a node-by-node DETACH DELETE would pull every edge of
    each node into one transaction, and a run of a million edges then exceeds the server's
    transaction memory (``dbms.memory.transaction.total.max``), found on ResNet-18.
    """
    deleted = 0
    for label in RUN_LABELS:
        graph.write_until_done(
            cypher("delete_edges_batch", label=label),
            {"key": key},
        )
    for label in RUN_LABELS:
        deleted += graph.write_until_done(
            cypher("delete_nodes_batch", label=label),
            {"key": key},
        )
    if not keep_run:
        graph.write(cypher("delete_run_node"), {"key": key})
    return deleted


def list_runs(graph: Graph, *, include_incomplete: bool = False) -> list[RunInfo]:
    """Runs, newest first; only complete ones unless asked."""
    rows = graph.read(
        cypher("list_runs"),
        {"all": include_incomplete},
    )
    return [RunInfo.from_row(row) for row in rows]


def find_run(graph: Graph, name: str) -> RunInfo | None:
    """The complete run called ``name``, or None."""
    rows = graph.read(cypher("find_complete_run"), {"name": name})
    return RunInfo.from_row(rows[0]) if rows else None


def _state_file() -> Path:
    from deepatlas.paths import home_dir

    return home_dir() / "state" / "last_run.json"


def _database_id(graph: Graph) -> str:
    return f"{graph.settings.uri}/{graph.settings.database}"


def last_run(graph: Graph) -> str | None:
    """The name of the run a command on this database was last pointed at (by ``--run`` or by
    writing it), or None."""
    try:
        state = json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return None
    name = state.get(_database_id(graph)) if isinstance(state, dict) else None
    return name if isinstance(name, str) else None


def remember_run(graph: Graph, name: str) -> None:
    """Record ``name`` as the run commands on this database default to next (one small JSON
    file under ``$DEEPATLAS_HOME/state``, written atomically, mode 0600; best effort)."""
    path = _state_file()
    try:
        state = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(state, dict):
            state = {}
    except (OSError, ValueError):
        state = {}
    state[_database_id(graph)] = name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh)
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("could not remember the run: %s", exc)


def resolve_run(graph: Graph, name: str | None = None) -> RunInfo:
    """The complete run called ``name``; without a name, the run to default to.

    The default, in order: the run a command on this database was last pointed at (an explicit
    ``--run`` or an ingest; see :func:`remember_run`) while it is still complete; else, when
    every complete run comes from one model, the latest; else none: runs of several models
    are stored, and guessing among them is how an experiment silently picks another model's
    run, so the user is asked to pass ``--run``. The choice is logged ("using run X ...").

    Raises
    ------
    NotFoundError
        No such complete run, or no complete run at all; the message lists the runs.
    UsageError
        No name, no remembered run, and complete runs of several models.
    """
    if name is not None and not name.strip():
        raise UsageError("--run must name a run; leave it out for the latest one (`deepatlas runs list`)")
    if name is None:
        remembered = last_run(graph)
        found = find_run(graph, remembered) if remembered else None
        if found is not None:
            log.info("using run %s, the run last used here (pass --run to choose another)", found.name)
            return found
        runs = list_runs(graph)
        if not runs:
            raise NotFoundError("no complete run in the graph yet; create one with `deepatlas ingest`")
        models = dict.fromkeys(r.model for r in runs)
        if len(models) > 1:
            listed = "; ".join(f"{r.name} (model {str(r.model)[:12]})" for r in runs[:8])
            raise UsageError(f"runs of {len(models)} models are stored ({listed}{'; ...' if len(runs) > 8 else ''}); "
                             "pass --run NAME")
        rows = graph.read(cypher("latest_complete_run"))
        info = RunInfo.from_row(rows[0])
        log.info("using run %s, the latest complete run (pass --run to choose another)", info.name)
        return info
    found = find_run(graph, name)
    if found is None:
        names = [r.name for r in list_runs(graph)]
        raise NotFoundError(f"no complete run named {name!r}; runs: {', '.join(names) or 'none yet'}")
    remember_run(graph, found.name)
    return found


def run_model_row(graph: Graph, info: RunInfo) -> dict[str, Any]:
    """The run's (:Model) node as ``sha``, ``path``, ``source`` and ``file_sha`` (what
    :func:`deepatlas.models.loading.reload_run_model` reads).

    Raises
    ------
    CheckpointError
        The run records no model.
    """
    rows = graph.read(cypher("run_model"), {"key": info.key})
    if not rows:
        raise CheckpointError(f"run {info.name} records no model")
    return dict(rows[0])


def delete_run(graph: Graph, name: str) -> int:
    """Delete every generation of run ``name``. Returns nodes deleted.

    Raises
    ------
    NotFoundError
        No run of that name.
    """
    rows = graph.read(cypher("run_keys_by_name"), {"name": name})
    if not rows:
        names = [r.name for r in list_runs(graph, include_incomplete=True)]
        raise NotFoundError(f"no run named {name!r}; runs: {', '.join(names) or 'none'}")
    return sum(_delete_run_data(graph, row["key"]) for row in rows)
