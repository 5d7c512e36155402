"""Deleting a run larger than the server's per-transaction memory (found on ResNet-18).

A dedicated server whose transactions may use only 32 MiB: a hub node with 200,000 edges
cannot be DETACH DELETEd in one transaction there, and the run deletion must still succeed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deepatlas.db.graph import Graph
from deepatlas.db.runs import _delete_run_data
from deepatlas.db.server import LocalServer
from deepatlas.db.settings import Settings
from deepatlas.errors import GraphError

from .conftest import free_port

pytestmark = pytest.mark.e2e
KEY = "big@00000000"


@pytest.fixture(scope="module")
def small_tx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Graph]:
    server = LocalServer(tmp_path_factory.mktemp("smalltx") / "neo4j", bolt_port=free_port(), http_port=free_port(),
                         heap="512m", settings={"db.memory.transaction.max": "32m"})
    server.start()
    try:
        # no retries: the one transaction expected to fail should fail at once
        with Graph(Settings(server.bolt_uri, "neo4j", server.read_password(), managed=True), retry_seconds=0) as g:
            yield g
    finally:
        server.stop()


def _build(g: Graph) -> None:
    g.write("CREATE CONSTRAINT big_neuron IF NOT EXISTS FOR (n:Neuron) REQUIRE n.key IS UNIQUE")
    g.write("CREATE CONSTRAINT big_class IF NOT EXISTS FOR (n:Class) REQUIRE n.key IS UNIQUE")
    g.write("CREATE (:Run {key: $k, name: 'big', status: 'replaced'})", {"k": KEY})
    g.write("CREATE (:Class {key: $k + '/class/0', run: $k})", {"k": KEY})
    g.write_batches("UNWIND $rows AS row CREATE (:Neuron {key: row.key, run: row.run})",
                    [{"key": f"{KEY}/n/{i}", "run": KEY} for i in range(600)])
    g.write_batches(
        "UNWIND $rows AS row MATCH (c:Class {key: $hub}) MATCH (n:Neuron {key: row.key}) "
        "CREATE (n)-[:COACTIVATES {r: row.r}]->(c)",
        [{"key": f"{KEY}/n/{i % 600}", "r": 0.5} for i in range(200_000)], batch_size=5_000, params={"hub": f"{KEY}/class/0"},
    )


def test_a_run_too_big_for_one_transaction_is_deleted_in_bounded_ones(small_tx: Graph) -> None:
    _build(small_tx)
    with pytest.raises(GraphError, match=r"MemoryPool|memory"):  # what the old node-by-node DETACH DELETE hit
        small_tx.write("MATCH (c:Class {run: $k}) DETACH DELETE c", {"k": KEY})
    _delete_run_data(small_tx, KEY)
    left = small_tx.read("MATCH (n) WHERE n.run = $k OR n.key = $k RETURN count(n) AS c", {"k": KEY})[0]["c"]
    assert left == 0
    assert small_tx.read("MATCH ()-[e:COACTIVATES]->() RETURN count(e) AS c")[0]["c"] == 0
