"""deepatlas: a trained classifier's neurons, classes and pixels as a Neo4j graph.

Layers (imports flow one way; see docs/ARCHITECTURE.md)::

    data, models -> ingest, explain -> graphops -> db -> cli
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
