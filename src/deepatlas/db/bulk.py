"""The bulk path: a run into an EMPTY managed local database through neo4j-admin's CSV import.

``neo4j-admin database import full`` (the same jars as the server) builds the store files
directly: it moves data about 2.6x faster than the Bolt writer (bench/RESULTS.md), but only
into an empty database and only while the server is stopped, and the stop and restart cost
~16 s, so it pays off for large runs only. So: write typed CSVs, stop the server, import, start it, create the schema,
check the counts, and only then mark the run complete (it is imported as ``running``).
"""

from __future__ import annotations

import csv
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepatlas.db.graph import Graph
from deepatlas.db.runs import RunInfo, ensure_schema, property_value, verify_counts, written_run
from deepatlas.db.schema import check_label, check_rel
from deepatlas.db.server import _ADMIN, LocalServer, _java
from deepatlas.db.templates import cypher
from deepatlas.errors import ServerError, UsageError
from deepatlas.rows import GraphTables

__all__ = ["bulk_import", "check_bulk_target", "database_is_empty"]


def database_is_empty(graph: Graph) -> bool:
    return graph.read(cypher("count_all_nodes"))[0]["n"] == 0


def check_bulk_target(graph: Graph) -> None:
    """Raise UsageError unless ``graph`` is the managed local server with an empty database."""
    if not graph.settings.managed:
        raise UsageError("--bulk works only with the managed local server (NEO4J_URI points elsewhere)")
    if not database_is_empty(graph):
        raise UsageError("--bulk needs an empty database (neo4j-admin import replaces it); drop --bulk to write over Bolt")


def _typed(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"{name}:boolean"
    if isinstance(value, int):
        return f"{name}:long"
    if isinstance(value, float):
        return f"{name}:double"
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return f"{name}:double[]"
    if isinstance(value, list):
        return f"{name}:string[]"
    return name


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return "" if value is None else str(value)


def _write_nodes(path: Path, label: str, rows: Sequence[dict[str, Any]], drop: tuple[str, ...] = ()) -> None:
    cols = [c for c in rows[0] if c != "key" and c not in drop]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["key:ID", ":LABEL", *(_typed(c, rows[0][c]) for c in cols)])
        for row in rows:
            w.writerow([row["key"], check_label(label), *(_cell(row[c]) for c in cols)])


def bulk_import(
    graph: Graph, server: LocalServer, tables: GraphTables, *, key: str, name: str, run_props: dict[str, Any],
    model_props: dict[str, Any],
) -> RunInfo:
    """Import one run into the empty local database. ``graph`` stays usable: its driver
    reconnects to the restarted server.

    Raises
    ------
    UsageError
        The database is not empty, or the server is not the managed local one.
    ServerError
        neo4j-admin failed (its last lines are in the message); the server is started again.
    """
    check_bulk_target(graph)
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    folder = server.home / "import" / "bulk"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    run_row = {"key": key, "name": name, "status": "running", "model": model_props["key"],
               **{k: property_value(v) for k, v in run_props.items() if v is not None}}
    run_row["counts"] = json.dumps({"nodes": tables.node_counts(), "edges": tables.edge_counts()})
    files: list[str] = []
    for label, rows in (("Run", [run_row]), ("Model", [{k: v for k, v in model_props.items() if v is not None}]),
                        ("Layer", tables.layers), ("Neuron", tables.neurons), ("Class", tables.classes), ("Pixel", tables.pixels)):
        if rows:
            path = folder / f"nodes-{label}.csv"
            _write_nodes(path, label, rows, drop=("layer_key",))
            files.append(f"--nodes={path}")
    rel_path = folder / "rels-structure.csv"
    with rel_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([":START_ID", ":END_ID", ":TYPE"])
        w.writerow([key, model_props["key"], check_rel("OF_MODEL")])
        for row in itertools.chain(tables.neurons, tables.classes):
            w.writerow([row["key"], row["layer_key"], check_rel("IN_LAYER")])
    files.append(f"--relationships={rel_path}")
    for i, table in enumerate(tables.edges):
        if not len(table):
            continue
        path = folder / f"rels-{i}-{table.rel}.csv"
        props = list(table.props)
        rows = table.rows()
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([":START_ID", ":END_ID", ":TYPE", *(_typed(p, rows[0][p]) for p in props)])
            rel = check_rel(table.rel)
            for row in rows:
                w.writerow([row["a"], row["b"], rel, *(_cell(row[p]) for p in props)])
        files.append(f"--relationships={path}")
    phases["csv"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    server.stop()
    phases["stop"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    env = {**server._env()}
    proc = subprocess.run(
        [_java(), "-cp", f"{server.lib}/*", _ADMIN, "database", "import", "full", "neo4j", "--overwrite-destination=true",
         "--id-type=string", *files],
        env=env, capture_output=True, text=True, check=False,
    )
    phases["import"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    server.start()
    phases["start"] = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
        raise ServerError(f"neo4j-admin import failed:\n{tail}")
    t0 = time.perf_counter()
    ensure_schema(graph)
    verify_counts(graph, key, tables.node_counts(), tables.edge_counts())
    phases["schema+verify"] = time.perf_counter() - t0
    graph.write(cypher("bulk_complete_run"),
                {"key": key, "phases": json.dumps(phases)})
    shutil.rmtree(folder, ignore_errors=True)
    return written_run(graph, name)
