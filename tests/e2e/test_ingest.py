"""Ingest a small really-trained model into the real server and check what is stored."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deepatlas.cli.app import app
from deepatlas.data import load_fashion_mnist
from deepatlas.db.graph import Graph
from deepatlas.db.queries import class_drivers, run_template
from deepatlas.db.runs import list_runs, resolve_run
from deepatlas.db.templates import list_templates
from deepatlas.errors import NotFoundError
from deepatlas.ingest.coactivation import compute_coactivation
from deepatlas.ingest.tables import SparsifyParams, build_tables
from deepatlas.models import load_checkpoint
from deepatlas.workflows.build import ingest
from deepatlas.workspace import DataSource, Workspace

pytestmark = pytest.mark.e2e
N = 600
PARAMS = SparsifyParams(min_abs_r=0.5, top_k=4, pixel_top_k=8)


@pytest.fixture(scope="module")
def ingested(neo4j_server, tiny_checkpoint: Path):  # type: ignore[no-untyped-def]
    with Graph(autostart=False) as g:
        report = ingest(Workspace(g, model=tiny_checkpoint, data=DataSource("fashion-mnist", split="test"), run="tiny", limit=N, device="cpu"), sparsify=PARAMS, edges=("coactivation",))
    ckpt = load_checkpoint(tiny_checkpoint)
    data = load_fashion_mnist("test").subset(N)
    result = compute_coactivation(ckpt.model, data, normalize=ckpt.normalize, sparsify=PARAMS)
    tables = build_tables(result, report.run.key, PARAMS)
    return report, result, tables


def test_counts_in_neo4j_equal_the_in_memory_tables(graph: Graph, ingested) -> None:  # type: ignore[no-untyped-def]
    report, _, tables = ingested
    key = report.run.key
    for label, n in tables.node_counts().items():
        assert graph.read(f"MATCH (n:{label} {{run: $key}}) RETURN count(n) AS c", {"key": key})[0]["c"] == n
    stored: dict[str, int] = {}
    for label in ("Neuron", "Class", "Pixel"):
        for row in graph.read(f"MATCH (n:{label} {{run: $key}})-[e]->() RETURN type(e) AS t, count(e) AS c", {"key": key}):
            stored[row["t"]] = stored.get(row["t"], 0) + row["c"]
    assert stored == tables.edge_counts()
    assert tables.node_counts() == {"Layer": 6, "Neuron": 4 + 8 + 8 + 16, "Class": 10, "Pixel": 784}
    info = resolve_run(graph, "tiny")
    assert info.status == "complete" and info.n_samples == N and info.params["top_k"] == 4


def test_drivers_are_the_highest_r_neurons_in_order(graph: Graph, ingested) -> None:  # type: ignore[no-untyped-def]
    _, result, _ = ingested
    _, stored, rows = class_drivers(graph, "sandal", k=7, run="tiny")
    assert stored == "Sandal"
    r = result.units.r.numpy()
    hidden = result.n_hidden
    col = r[:hidden, hidden + 5]  # Sandal is class 5
    names = [(s.name, i) for s in result.layers for i in range(s.size)]
    order = np.argsort(-col, kind="stable")[:7]
    assert [(row["layer"], row["unit"]) for row in rows] == [names[i] for i in order]
    assert [row["r"] for row in rows] == pytest.approx(col[order].tolist(), abs=1e-5)
    assert all(a >= b for a, b in itertools.pairwise([x["r"] for x in rows]))


def test_unknown_class_and_run_list_valid_ones(graph: Graph, ingested) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFoundError, match="classes: T-shirt/top, Trouser"):
        class_drivers(graph, "Sandle", run="tiny")
    with pytest.raises(NotFoundError, match=r"runs: .*tiny"):
        class_drivers(graph, "Sandal", run="nope")


def test_every_template_runs_on_the_stored_run(graph: Graph, ingested) -> None:  # type: ignore[no-untyped-def]
    _, _, top = class_drivers(graph, "Sandal", k=1, run="tiny")  # a live unit: dead ones have no edges
    values = {"run": "tiny", "class": "Sandal", "k": 5, "layer": top[0]["layer"], "unit": top[0]["unit"]}
    values |= {"a": "Sandal", "b": "Sneaker", "community": 0, "by": "influence", "base": "tiny", "head": "tiny"}
    needs_only_ingest = {"class_drivers", "class_list", "confused_pairs", "layer_summary", "neuron_heatmap", "neuron_partners"}
    for t in list_templates():
        rows = run_template(graph, t.name, {p: values[p] for p in t.params})  # every template runs
        if t.name in needs_only_ingest:
            assert rows, t.name
    heat = run_template(graph, "neuron_heatmap", {"run": "tiny", "layer": "relu1", "unit": 1})[0]
    assert heat["pixels"] == 784 and len(heat["pixel_r"]) == 784


def test_reingest_replaces_the_run_whole(graph: Graph, ingested, tiny_checkpoint: Path) -> None:  # type: ignore[no-untyped-def]
    old_key = ingested[0].run.key
    new = ingest(Workspace(graph, model=tiny_checkpoint, run="tiny", limit=300, device="cpu"), sparsify=PARAMS, edges=("coactivation",), replace=True)  # other data (300 of the 600 images): replaced only when asked
    assert new.run.key != old_key and new.run.n_samples == 300
    assert [r.key for r in list_runs(graph, include_incomplete=True) if r.name == "tiny"] == [new.run.key]
    assert graph.read("MATCH (n:Neuron {run: $k}) RETURN count(n) AS c", {"k": old_key})[0]["c"] == 0
    assert graph.read("MATCH (n:Neuron {run: $k}) RETURN count(n) AS c", {"k": new.run.key})[0]["c"] == 36


def test_a_failure_mid_write_leaves_the_complete_run_untouched(graph: Graph, tiny_checkpoint: Path) -> None:
    before = resolve_run(graph, "tiny")
    calls = {"n": 0}

    def explode(stage: str, advance: int, total: int) -> None:
        if stage == "write":
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("simulated crash while writing")

    with pytest.raises(RuntimeError, match="simulated"):
        ingest(Workspace(graph, model=tiny_checkpoint, run="tiny", limit=200, device="cpu", progress=explode), sparsify=PARAMS, edges=("coactivation",), replace=True)
    failed = [r for r in list_runs(graph, include_incomplete=True) if r.name == "tiny" and r.status == "failed"]
    assert len(failed) == 1
    assert graph.read("MATCH (n:Neuron {run: $k}) RETURN count(n) AS c", {"k": failed[0].key})[0]["c"] == 0
    assert resolve_run(graph, "tiny").key == before.key  # readers still see the old complete run
    # the same command afterwards completes, and cleans the failed leftover
    again = ingest(Workspace(graph, model=tiny_checkpoint, run="tiny", limit=200, device="cpu"), sparsify=PARAMS, edges=("coactivation",), replace=True)
    assert [r.status for r in list_runs(graph, include_incomplete=True) if r.name == "tiny"] == ["complete"]
    assert again.run.n_samples == 200


def test_cli_ingest_query_runs(neo4j_server, tiny_checkpoint: Path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    r = runner.invoke(app, ["ingest", "--model", str(tiny_checkpoint), "--limit", "250", "--run", "cli-run",
                            "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["run"] == "cli-run" and out["nodes"]["Neuron"] == 36
    r = runner.invoke(app, ["query", "drivers", "--class", "ankle BOOT", "-k", "3", "--run", "cli-run", "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["class"] == "Ankle boot" and len(got["drivers"]) == 3
    r = runner.invoke(app, ["query", "run", "confused_pairs", "-p", "k=2", "--json"])  # run defaults to the latest
    assert r.exit_code == 0 and len(json.loads(r.stdout)) <= 2
    r = runner.invoke(app, ["query", "drivers", "--class", "Sandal", "-k", "0"])
    assert r.exit_code == 1 and "k must lie" in r.output
    r = runner.invoke(app, ["ingest", "--model", str(tiny_checkpoint), "--layers", "conv9", "--run", "bad"])
    assert r.exit_code == 1 and "unknown layer 'conv9'" in r.output
    r = runner.invoke(app, ["runs", "list", "--json"])
    assert {x["name"] for x in json.loads(r.stdout)} >= {"cli-run", "tiny"}
    assert runner.invoke(app, ["runs", "delete", "cli-run", "-y"]).exit_code == 0
    r = runner.invoke(app, ["runs", "show", "cli-run"])
    assert r.exit_code == 1 and "no complete run named 'cli-run'" in r.output


def test_influence_and_gradient_edges_match_the_explain_layer(graph: Graph, tiny_checkpoint: Path) -> None:
    from deepatlas.explain.aggregate import (
        class_gradient_scores,
        class_influence_scores,
        layer_influence,
    )

    report = ingest(Workspace(graph, model=tiny_checkpoint, run="attrib", limit=300, device="cpu"), attribution_per_class=5, between_samples=20)
    assert report.edges["GRADIENT"] > 0 and report.edges["INFLUENCES"] > 0
    ckpt = load_checkpoint(tiny_checkpoint)
    data = load_fashion_mnist("test").subset(300)
    layers = ["relu1", "relu2", "relu3", "relu4"]
    grad = class_gradient_scores(ckpt.model, data, layers, normalize=ckpt.normalize, per_class=5)
    infl = class_influence_scores(ckpt.model, data, layers, normalize=ckpt.normalize, per_class=5)
    betw = layer_influence(ckpt.model, data, layers, normalize=ckpt.normalize, samples=20)
    key = report.run.key
    rows = graph.read("MATCH (n:Neuron {run: $k})-[e:GRADIENT]->(c:Class) RETURN n.layer AS l, n.index AS i, c.index AS c, e.pg AS v", {"k": key})
    assert rows and all(abs(r["v"] - float(grad[r["l"]][r["c"], r["i"]])) < 1e-5 for r in rows)
    rows = graph.read("MATCH (n:Neuron {run: $k})-[e:INFLUENCES]->(c:Class) RETURN n.layer AS l, n.index AS i, c.index AS c, e.score AS v", {"k": key})
    assert rows and all(abs(r["v"] - float(infl[r["l"]][r["c"], r["i"]])) < 1e-5 for r in rows)
    rows = graph.read("MATCH (a:Neuron {run: $k})-[e:INFLUENCES]->(b:Neuron) RETURN a.layer AS la, a.index AS ia, b.layer AS lb, b.index AS ib, e.score AS v", {"k": key})
    assert {(r["la"], r["lb"]) for r in rows} == {("relu1", "relu2"), ("relu2", "relu3"), ("relu3", "relu4")}
    assert all(abs(r["v"] - float(betw[(r["la"], r["lb"])][r["ia"], r["ib"]])) < 1e-5 for r in rows)
    info = resolve_run(graph, "attrib")
    assert info.params["edges"] == ["coactivation", "influence", "gradient"]
