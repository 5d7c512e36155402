"""Plain create / read / delete against the real server, and the error mapping."""

from __future__ import annotations

import pytest

from deepatlas.db.graph import Graph
from deepatlas.db.settings import Settings
from deepatlas.errors import GraphError

pytestmark = pytest.mark.e2e


def test_create_read_delete(graph: Graph) -> None:
    graph.write("UNWIND range(1, 5) AS i CREATE (:E2eProbe {i: i})")
    rows = graph.read("MATCH (p:E2eProbe) RETURN sum(p.i) AS s, count(p) AS n")
    assert rows == [{"s": 15, "n": 5}]
    n = graph.write_until_done("MATCH (p:E2eProbe) WITH p LIMIT $limit DELETE p RETURN count(*) AS count", limit=2)
    assert n == 5
    assert graph.read("MATCH (p:E2eProbe) RETURN count(p) AS n") == [{"n": 0}]


def test_batched_writes(graph: Graph) -> None:
    seen: list[int] = []
    rows = [{"i": i} for i in range(25)]
    written = graph.write_batches("UNWIND $rows AS row CREATE (:E2eBatch {i: row.i})", rows, batch_size=10, progress=seen.append)
    assert written == 25 and seen == [10, 10, 5]
    assert graph.read("MATCH (b:E2eBatch) RETURN count(b) AS n") == [{"n": 25}]
    graph.write("MATCH (b:E2eBatch) DELETE b")


def test_read_transactions_refuse_writes(graph: Graph) -> None:
    with pytest.raises(GraphError, match="read-only"):
        graph.read("CREATE (:Smuggled)")
    assert graph.read("MATCH (s:Smuggled) RETURN count(s) AS n") == [{"n": 0}]


def test_wrong_password_is_one_clear_error(neo4j_server) -> None:  # type: ignore[no-untyped-def]
    bad = Settings(neo4j_server.bolt_uri, "neo4j", "not-the-password-xyz")
    with pytest.raises(GraphError, match="refused the credentials") as info:
        Graph(bad)
    assert "not-the-password-xyz" not in str(info.value)


def test_syntax_error_is_a_graph_error(graph: Graph) -> None:
    with pytest.raises(GraphError, match="refused the query"):
        graph.read("MATCH (n RETURN n")
