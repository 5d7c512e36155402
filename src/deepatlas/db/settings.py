"""Connection settings: an external server from NEO4J_* variables, or the managed local one."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["Settings", "resolve_settings"]


@dataclass(frozen=True)
class Settings:
    """How to reach Neo4j.

    Attributes
    ----------
    uri : str
    user : str
    password : str
        Never printed: ``repr`` masks it.
    database : str
    managed : bool
        True when the URI is the managed local server (which may need starting).
    """

    uri: str
    user: str
    password: str
    database: str = "neo4j"
    managed: bool = False

    def __repr__(self) -> str:
        return f"Settings(uri={self.uri!r}, user={self.user!r}, password='***', database={self.database!r}, managed={self.managed})"

    __str__ = __repr__


def resolve_settings() -> Settings:
    """NEO4J_URI (+ NEO4J_USERNAME, NEO4J_PASSWORD, NEO4J_DATABASE) if set; else the local server.

    With NEO4J_URI set no local server is ever started.
    """
    uri = os.environ.get("NEO4J_URI")
    if uri:
        return Settings(
            uri=uri,
            user=os.environ.get("NEO4J_USERNAME", "neo4j"),
            password=os.environ.get("NEO4J_PASSWORD", ""),
            database=os.environ.get("NEO4J_DATABASE", "neo4j"),
        )
    from deepatlas.db.server import LocalServer

    server = LocalServer()
    return Settings(
        uri=server.bolt_uri,
        user="neo4j",
        password=server.read_password(),
        database=os.environ.get("NEO4J_DATABASE", "neo4j"),
        managed=True,
    )
