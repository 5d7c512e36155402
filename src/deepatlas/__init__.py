"""deepatlas: a trained classifier's neurons, classes and pixels as a Neo4j graph.

Layers (imports flow one way; see docs/ARCHITECTURE.md)::

    data, models -> ingest, explain, graphops, db -> workflows -> cli

Scripts bind what a job works on once in a :class:`Workspace` and call the workflows with it.
"""

from __future__ import annotations

from deepatlas.workspace import Workspace

__all__ = ["Workspace", "__version__"]

__version__ = "0.1.0"
