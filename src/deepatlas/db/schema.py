"""The graph schema: labels and relationship types (the allow-list), constraints, indexes.

Keys are single strings with uniqueness constraints (composite keys need Enterprise). Every
node but Model carries ``run`` = the ingest id (``Run.key``), indexed, so one run's nodes are
found without a scan. See docs/ARCHITECTURE.md for the whole schema.
"""

from __future__ import annotations

from deepatlas.db.templates import cypher

__all__ = ["LABELS", "RELATIONSHIPS", "RUN_LABELS", "SCHEMA", "check_label", "check_rel"]

from deepatlas.errors import UsageError

#: Node labels deepatlas writes. Queries interpolate labels only from this tuple.
LABELS = ("Model", "Run", "Layer", "Neuron", "Class", "Pixel", "Community", "Experiment", "Comparison")
#: Labels whose nodes belong to one run (carry ``run``), deleted with it.
RUN_LABELS = ("Neuron", "Class", "Pixel", "Layer", "Community", "Experiment")
#: Relationship types deepatlas writes.
RELATIONSHIPS = (
    "OF_MODEL", "IN_LAYER", "COACTIVATES", "INFLUENCES", "GRADIENT", "CONFUSED_WITH",
    "OVERLAPS", "IN_SET", "MEMBER_OF", "TARGETS", "ON_CLASS", "MATCHES", "BASE", "HEAD",
)

SCHEMA: tuple[str, ...] = tuple(
    [cypher("constraint_key", lab_lower=lab.lower(), lab=lab) for lab in LABELS]
    + [cypher("index_run_property", lab_lower=lab.lower(), lab=lab) for lab in RUN_LABELS]
    + [
        cypher("index_run_name"),
        cypher("index_run_status"),
        cypher("index_class_name"),
    ]
)


def check_label(label: str) -> str:
    if label not in LABELS:
        raise UsageError(f"unknown label {label!r}; labels: {', '.join(LABELS)}")
    return label


def check_rel(rel: str) -> str:
    if rel not in RELATIONSHIPS:
        raise UsageError(f"unknown relationship type {rel!r}; types: {', '.join(RELATIONSHIPS)}")
    return rel
