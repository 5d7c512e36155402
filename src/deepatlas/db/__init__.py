"""Everything that talks to Neo4j. The only package that imports the ``neo4j`` driver.

- :mod:`settings`  where to connect (env vars or the managed local server)
- :mod:`server`    the managed local Neo4j 5.26 Community server (jars from Maven Central)
- :mod:`graph`     :class:`Graph`: sessions, schema, batched writes, reads, templates
- :mod:`templates` the ``*.cypher`` library shipped in ``deepatlas/cypher``
"""

from __future__ import annotations

from deepatlas.db.graph import Graph
from deepatlas.db.settings import Settings, resolve_settings
from deepatlas.db.templates import Template, list_templates, load_template

__all__ = ["Graph", "Settings", "Template", "list_templates", "load_template", "resolve_settings"]
