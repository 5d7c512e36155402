"""The package's exception types.

Every failure a user can cause or fix raises a subclass of :class:`DeepAtlasError`; the CLI
turns these into one red line and a non-zero exit. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "DataError",
    "DeepAtlasError",
    "GraphError",
    "GraphUnavailable",
    "IngestError",
    "NotFoundError",
    "ServerError",
    "UsageError",
]


class DeepAtlasError(Exception):
    """Base class: a problem the user can act on. The message says what to do."""


class UsageError(DeepAtlasError):
    """An argument is out of range or malformed."""


class DataError(DeepAtlasError):
    """A data set is missing, truncated or of the wrong shape."""


class CheckpointError(DeepAtlasError):
    """A checkpoint is missing, corrupt, truncated or of another architecture."""


class IngestError(DeepAtlasError):
    """Capturing or summarising activations failed (bad layer names, NaN outputs, ...)."""


class ServerError(DeepAtlasError):
    """The managed local Neo4j could not be installed, started or stopped."""


class GraphError(DeepAtlasError):
    """Talking to Neo4j failed: unreachable, wrong password, a query the server refused."""


class GraphUnavailable(GraphError):
    """The server cannot be reached (down, killed, wrong address)."""


class NotFoundError(DeepAtlasError):
    """A run, class, layer or template that does not exist; the message lists valid ones."""
