"""Named questions answered from the template library (read transactions only)."""

from __future__ import annotations

from typing import Any

from deepatlas.db.graph import Graph
from deepatlas.db.runs import RunInfo, resolve_run
from deepatlas.db.templates import cypher, load_template
from deepatlas.errors import NotFoundError, UsageError

__all__ = ["class_drivers", "class_names", "resolve_class", "run_template"]


def run_template(graph: Graph, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Run a shipped template by name with already-typed parameters, in a read transaction."""
    template = load_template(name)
    missing = template.used_params - set(params)
    if missing:
        raise UsageError(f"template {name} needs -p {sorted(missing)[0]}=...")
    return graph.read(template.text, {k: v for k, v in params.items() if k in template.used_params})


def class_names(graph: Graph, run: RunInfo) -> list[str]:
    rows = graph.read(cypher("class_names"), {"key": run.key})
    return [row["name"] for row in rows]


def resolve_class(graph: Graph, run: RunInfo, name: str) -> str:
    """The stored spelling of class ``name`` (matched case-insensitively)."""
    names = class_names(graph, run)
    for stored in names:
        if stored.lower() == name.strip().lower():
            return stored
    raise NotFoundError(f"no class {name!r} in run {run.name}; classes: {', '.join(names)}")


def class_drivers(graph: Graph, class_name: str, *, k: int = 10, run: str | None = None) -> tuple[RunInfo, str, list[dict[str, Any]]]:
    """The ``k`` hidden neurons with the highest co-activation r to a class.

    Returns
    -------
    (run, class name as stored, rows with layer, unit, kind, r, key)
    """
    if k <= 0 or k > 100_000:
        raise UsageError(f"k must lie in 1..100000, got {k}")
    info = resolve_run(graph, run)
    stored = resolve_class(graph, info, class_name)
    rows = run_template(graph, "class_drivers", {"run": info.name, "class": stored, "k": k})
    return info, stored, rows
