"""Cypher carried in names and parameters changes nothing and matches nothing; bad input is
refused with one line, and nothing stored changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepatlas.cli.app import app
from deepatlas.db.graph import Graph
from deepatlas.workflows.build import ingest
from deepatlas.workspace import Workspace

pytestmark = pytest.mark.e2e
runner = CliRunner()

PAYLOADS = [
    "x'}) DETACH DELETE n //",
    "Sandal' OR 1=1 //",
    "`Neuron`) DETACH DELETE n WITH 1 AS x MATCH (m",
    "\\u0027); MATCH (n) DETACH DELETE n; //",
    '" } ) RETURN 1 UNION MATCH (n) DETACH DELETE n //',
]


def _fingerprint(g: Graph) -> tuple[int, int]:
    rows = g.read("MATCH (n) OPTIONAL MATCH (n)-[e]->() RETURN count(DISTINCT n) AS n, count(e) AS e")
    return rows[0]["n"], rows[0]["e"]


@pytest.fixture(scope="module")
def stored(neo4j_server, tiny_checkpoint: Path) -> str:  # type: ignore[no-untyped-def]
    with Graph(autostart=False) as g:
        ingest(Workspace(g, model=tiny_checkpoint, run="inject", limit=200, device="cpu"), edges=("coactivation",))
    return "inject"


@pytest.mark.parametrize("payload", PAYLOADS)
def test_injection_through_class_run_and_template_parameters(stored: str, payload: str, graph: Graph) -> None:
    before = _fingerprint(graph)
    r = runner.invoke(app, ["query", "drivers", "--class", payload, "--run", stored])
    assert r.exit_code == 1 and "no class" in r.output
    r = runner.invoke(app, ["query", "drivers", "--class", "Sandal", "--run", payload])
    assert r.exit_code == 1 and "no complete run named" in r.output
    r = runner.invoke(app, ["query", "run", "class_drivers", "-p", f"run={stored}", "-p", f"class={payload}", "-p", "k=5", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout) == []  # matches nothing
    r = runner.invoke(app, ["query", "run", "class_drivers", "-p", f"run={payload}", "-p", "class=Sandal", "-p", "k=5", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout) == []
    r = runner.invoke(app, ["runs", "delete", payload, "-y"])
    assert r.exit_code == 1 and "no run named" in r.output
    r = runner.invoke(app, ["ingest", "--model", "/nonexistent.pt", "--run", payload])
    assert r.exit_code == 1
    assert _fingerprint(graph) == before


def test_run_names_are_validated_before_anything_is_written(stored: str, tiny_checkpoint: Path, graph: Graph) -> None:
    before = _fingerprint(graph)
    r = runner.invoke(app, ["ingest", "--model", str(tiny_checkpoint), "--limit", "50", "--run", "a'b", "--device", "cpu"])
    assert r.exit_code == 1 and "must be 1-100 characters" in r.output
    assert _fingerprint(graph) == before


def test_bad_input_changes_nothing_stored(stored: str, tiny_checkpoint: Path, graph: Graph, tmp_path: Path) -> None:
    before = _fingerprint(graph)
    (tmp_path / "bad.pt").write_bytes(b"\x00" * 64)
    cases = [
        (["ingest", "--model", str(tmp_path / "bad.pt")], "corrupt or truncated"),
        (["ingest", "--model", str(tiny_checkpoint), "--data", "nosuch"], "unknown data set 'nosuch'"),
        (["ingest", "--model", str(tiny_checkpoint), "--data", f"cifar10:{tmp_path}"], "deepatlas never downloads"),
        (["ingest", "--model", str(tiny_checkpoint), "--layers", "relu1,relu1"], "named twice"),
        (["ingest", "--model", str(tiny_checkpoint), "--edges", "coactivation,magic"], "--edges takes"),
        (["query", "drivers", "--class", "Sandal", "-k", "-3"], "k must lie"),
        (["query", "drivers", "--class", "Sandal", "-k", "10000000"], "k must lie"),
        (["query", "run", "class_drivers", "-p", "k=many", "-p", "class=x"], "k must be int"),
        (["query", "run", "nope"], "no template"),
        (["experiment", "knockout", "--class", "Sandal", "--run", stored, "--ks", "-1"], "--ks must"),
        (["experiment", "community", "--community", "0", "--run", stored], "no communities yet"),
    ]
    for args, message in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 1, (args, r.output)
        assert message in r.output, (args, r.output)
        assert "Traceback" not in r.output
    assert _fingerprint(graph) == before


def test_a_write_smuggled_into_a_template_parameter_cannot_run(stored: str, graph: Graph) -> None:
    from deepatlas.errors import GraphError

    before = _fingerprint(graph)
    with pytest.raises(GraphError, match="read-only"):
        graph.read("MATCH (n:Neuron) WITH n LIMIT 1 DETACH DELETE n")
    assert _fingerprint(graph) == before
