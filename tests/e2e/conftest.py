"""The real local Neo4j, started once per test session in a temporary home on free ports.

The e2e tests never touch the user's own ~/.deepatlas; the jar cache (~/.cache/deepatlas) is
shared so no test downloads anything after the bootstrap.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from deepatlas.db.graph import Graph
from deepatlas.db.server import LocalServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def neo4j_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    home = tmp_path_factory.mktemp("deepatlas-home")
    bolt, http = free_port(), free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("NEO4J_URI", raising=False)
        mp.setenv("DEEPATLAS_HOME", str(home))
        mp.setenv("DEEPATLAS_BOLT_PORT", str(bolt))
        mp.setenv("DEEPATLAS_HTTP_PORT", str(http))
        server = LocalServer()
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture()
def graph(neo4j_server: LocalServer) -> Iterator[Graph]:
    with Graph(autostart=False) as g:
        yield g
