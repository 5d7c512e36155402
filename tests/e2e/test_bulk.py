"""The bulk path: neo4j-admin's CSV import into an empty managed local database."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepatlas.db.graph import Graph
from deepatlas.db.queries import class_drivers
from deepatlas.db.server import LocalServer
from deepatlas.db.settings import Settings
from deepatlas.errors import UsageError
from deepatlas.workflows.build import ingest
from deepatlas.workspace import Workspace

from .conftest import free_port

pytestmark = pytest.mark.e2e


def test_bulk_import_equals_the_bolt_writer(neo4j_server: LocalServer, tiny_checkpoint: Path,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the reference: the same ingest over Bolt into the shared server
    with Graph(autostart=False) as shared:
        bolt = ingest(Workspace(shared, model=tiny_checkpoint, run="bulk-ref", limit=300, device="cpu"), edges=("coactivation",))
        _, _, want = class_drivers(shared, "Sandal", k=5, run="bulk-ref")
    home = tmp_path / "home"
    monkeypatch.setenv("DEEPATLAS_HOME", str(home))
    monkeypatch.setenv("DEEPATLAS_BOLT_PORT", str(free_port()))
    monkeypatch.setenv("DEEPATLAS_HTTP_PORT", str(free_port()))
    server = LocalServer()
    server.start()
    try:
        with Graph(Settings(server.bolt_uri, "neo4j", server.read_password(), managed=True), retry_seconds=60) as g:
            report = ingest(Workspace(g, model=tiny_checkpoint, run="bulk", limit=300, device="cpu"), edges=("coactivation",), bulk=True)
            assert report.run.status == "complete" and report.nodes == bolt.nodes and report.edges == bolt.edges
            _, _, got = class_drivers(g, "Sandal", k=5, run="bulk")
            assert [(r["layer"], r["unit"], r["r"]) for r in got] == [(r["layer"], r["unit"], r["r"]) for r in want]
            heat = g.read("MATCH (n:Neuron {key: $k}) RETURN n.pixel_r AS p, n.dead AS d, n.index AS i", {"k": got[0]["key"]})[0]
            assert len(heat["p"]) == 784 and heat["d"] is False and isinstance(heat["i"], int)
            with pytest.raises(UsageError, match="needs an empty database"):
                ingest(Workspace(g, model=tiny_checkpoint, run="bulk2", limit=100, device="cpu"), edges=("coactivation",), bulk=True)
    finally:
        server.stop()
