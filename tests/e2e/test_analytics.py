"""Analytics on a run in the real server: written back idempotently, audited, exported."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from typer.testing import CliRunner

from deepatlas.cli.app import app
from deepatlas.data import load_fashion_mnist
from deepatlas.db.graph import Graph
from deepatlas.db.queries import run_template
from deepatlas.graphops import (
    class_neuron_sets,
    jaccard_matrix,
    mistakes_matrix,
    overlap_vs_mistakes,
)
from deepatlas.ingest.coactivation import compute_coactivation
from deepatlas.models import load_checkpoint
from deepatlas.workflows.analysis import analyze_centrality, analyze_communities, analyze_overlap
from deepatlas.workflows.build import ingest
from deepatlas.workspace import Workspace

pytestmark = pytest.mark.e2e
RUN = "analytics"
N = 1500


@pytest.fixture(scope="module")
def result(neo4j_server, tiny_checkpoint: Path):  # type: ignore[no-untyped-def]
    with Graph(autostart=False) as g:
        ingest(Workspace(g, model=tiny_checkpoint, run=RUN, limit=N, device="cpu"))
    ckpt = load_checkpoint(tiny_checkpoint)
    return compute_coactivation(ckpt.model, load_fashion_mnist("test").subset(N), normalize=ckpt.normalize)


def test_communities_on_the_complete_graph_by_default(graph: Graph, result) -> None:  # type: ignore[no-untyped-def]
    """Default: Louvain on every pair's r, equal to Louvain on the ingest code's full r matrix
    built independently here; the stored sparsified graph gives another modularity; every
    reported modularity names its graph."""
    from deepatlas.db.analytics import read_run_graph
    from deepatlas.db.runs import resolve_run
    from deepatlas.graphops import coactivation_graph, louvain

    rep = analyze_communities(Workspace(graph, run=RUN, device="cpu"), seed=1)
    assert rep.graph == "complete" and rep.params["graph"] == "complete"
    rg = read_run_graph(graph, resolve_run(graph, RUN))
    keys = [n["key"] for n in rg.neurons] + [c["key"] for c in rg.classes]
    r = result.units.r.numpy()
    i, j = np.triu_indices(len(keys), k=1)
    edges = [(keys[a], keys[b], float(r[a, b])) for a, b in zip(i, j, strict=True) if np.isfinite(r[a, b])]
    expected = louvain(coactivation_graph([dict(n) for n in rg.neurons] + [dict(c) for c in rg.classes], edges), seed=1)
    assert rep.modularity == pytest.approx(expected.modularity, abs=1e-9)
    assert rep.membership == expected.membership
    stored_positive = {frozenset((a, b)) for a, b, r in rg.edges if r > 0 and a != b}
    assert rep.params["edges"] > len(stored_positive)  # more positive pairs than the stored graph keeps
    stored = analyze_communities(Workspace(graph, run=RUN), seed=1, graph_kind="stored", write=False)
    assert stored.graph == "stored" and stored.modularity != pytest.approx(rep.modularity, abs=1e-3)
    rows = graph.read("MATCH (c:Community)<-[:MEMBER_OF]-() WHERE c.run STARTS WITH $p RETURN DISTINCT c.graph AS g", {"p": RUN + "@"})
    assert [row["g"] for row in rows] == ["complete"]
    assert {row["modularity_graph"] for row in run_template(graph, "communities", {"run": RUN})} == {"complete"}
    q = graph.read("MATCH (r:Run {name: $run, status: 'complete'}) RETURN r.modularity_graph AS g", {"run": RUN})[0]["g"]
    assert q == "complete"
    out = CliRunner().invoke(app, ["analyze", "communities", "--run", RUN, "--graph", "stored", "--dry-run", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["modularity_graph"] == "stored"
    bad = CliRunner().invoke(app, ["analyze", "communities", "--run", RUN, "--graph", "dense", "--dry-run"])
    assert bad.exit_code == 1 and "graph must be one of" in bad.output


def test_communities_written_once_however_often_run(graph: Graph, result) -> None:  # type: ignore[no-untyped-def]
    first = analyze_communities(Workspace(graph, run=RUN), seed=1, graph_kind="stored")
    second = analyze_communities(Workspace(graph, run=RUN), seed=1, graph_kind="stored")
    assert first.membership == second.membership and first.modularity == second.modularity
    rows = run_template(graph, "communities", {"run": RUN})
    assert len(rows) == len(first.communities)
    members = graph.read("MATCH (n)-[:MEMBER_OF]->(c:Community) WHERE c.run STARTS WITH $p RETURN count(n) AS n", {"p": RUN + "@"})
    assert members[0]["n"] == result.n_hidden + 10  # every neuron and class exactly once
    assert 0.0 < first.modularity < 1.0
    assert sorted(c for comm in first.communities for c in comm["classes"]) == sorted(result.class_names)
    q = graph.read("MATCH (r:Run {name: $run, status: 'complete'}) RETURN r.modularity AS q", {"run": RUN})[0]["q"]
    assert q == pytest.approx(first.modularity)
    members_of_0 = run_template(graph, "community_members", {"run": RUN, "community": 0})
    assert len(members_of_0) == first.communities[0]["size"]


def test_overlap_matches_an_independent_computation(graph: Graph, result) -> None:  # type: ignore[no-untyped-def]
    rep = analyze_overlap(Workspace(graph, run=RUN), top_k=6)
    analyze_overlap(Workspace(graph, run=RUN), top_k=6)  # idempotent
    h = result.n_hidden
    r = result.units.r.numpy()[:h, h:]
    sets = class_neuron_sets(np.round(r, 6), top_k=6)
    jac = jaccard_matrix(sets)
    mis = mistakes_matrix(result.confusion.numpy())
    st = overlap_vs_mistakes(jac, mis)
    assert rep.stats.r == pytest.approx(st.r, abs=1e-9)
    got = {(p["a"], p["b"]): p["jaccard"] for p in rep.pairs}
    names = result.class_names
    for a in range(10):
        for b in range(a + 1, 10):
            assert got[(names[a], names[b])] == pytest.approx(jac[a, b])
    assert graph.read("MATCH (a:Class)-[o:OVERLAPS]->() WHERE a.run STARTS WITH $p RETURN count(o) AS n", {"p": RUN + "@"})[0]["n"] == 45
    in_set = graph.read("MATCH (n:Neuron)-[s:IN_SET]->() WHERE n.run STARTS WITH $p RETURN count(s) AS n", {"p": RUN + "@"})[0]["n"]
    assert in_set == sum(len(s) for s in sets)
    # Cypher counts the shared neurons the OVERLAPS edge records
    best = max(rep.pairs, key=lambda p: p["shared"])
    shared = run_template(graph, "shared_neurons", {"run": RUN, "a": best["a"], "b": best["b"]})
    assert len(shared) == best["shared"]
    only_a = run_template(graph, "drives_a_not_b", {"run": RUN, "a": best["a"], "b": best["b"]})
    assert len(only_a) == len(rep.sets[best["a"]]) - best["shared"]
    pairs = run_template(graph, "confused_pairs_shared", {"run": RUN, "k": 3})
    assert [p["mistakes"] for p in pairs] == sorted((p["mistakes"] for p in rep.pairs), reverse=True)[:3]


def test_centrality_properties(graph: Graph, result) -> None:  # type: ignore[no-untyped-def]
    rep = analyze_centrality(Workspace(graph, run=RUN), k=5)
    rows = run_template(graph, "central_neurons", {"run": RUN, "k": 5})
    assert [f"{r['layer']}:{r['unit']}" for r in rows] == [t["unit"] for t in rep.top]
    assert all(a["strength"] >= b["strength"] for a, b in itertools.pairwise(rows))


def test_audit_json_thresholds_and_figures(result, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    r = runner.invoke(app, ["audit", "confusion", "--run", RUN, "--json", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["passed"] is True and len(rep["by_mistakes"]) == 10
    assert rep["by_mistakes"][0]["mistakes"] >= rep["by_mistakes"][-1]["mistakes"]
    for name in ("scatter", "communities", "heatmaps"):
        png = Path(rep["figures"][name])
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    worst = rep["by_overlap"][0]["jaccard"]
    r = runner.invoke(app, ["audit", "confusion", "--run", RUN, "--json", "--no-plots", "--max-jaccard", str(worst / 2)])
    assert r.exit_code == 1 and json.loads(r.stdout)["passed"] is False
    r = runner.invoke(app, ["audit", "confusion", "--run", RUN, "--no-plots", "--max-jaccard", "1.0"])
    assert r.exit_code == 0 and "PASS" in r.output
    r = runner.invoke(app, ["audit", "confusion", "--run", RUN, "--no-plots", "--min-r", "1.0"])
    assert r.exit_code == 1 and "below 1.0" in r.output
    r = runner.invoke(app, ["audit", "confusion", "--run", RUN, "--min-r", "7"])
    assert r.exit_code == 1 and "must lie in [-1, 1]" in r.output


def test_exports_read_back(graph: Graph, result, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    counts = {}
    for fmt in ("graphml", "gexf", "json"):
        out = tmp_path / f"g.{fmt}"
        r = runner.invoke(app, ["export", fmt, "--run", RUN, "--out", str(out), "--json"])
        assert r.exit_code == 0, r.output
        counts[fmt] = json.loads(r.stdout)
    g1 = nx.read_graphml(tmp_path / "g.graphml")
    g2 = nx.read_gexf(tmp_path / "g.gexf")
    data = json.loads((tmp_path / "g.json").read_text())
    stored = graph.read("MATCH (n) WHERE n.run STARTS WITH $p AND NOT n:Pixel RETURN count(n) AS n", {"p": RUN + "@"})[0]["n"]
    assert g1.number_of_nodes() == g2.number_of_nodes() == len(data["nodes"]) == stored
    assert g1.number_of_edges() == counts["graphml"]["edges"] > 0
    classes = [d for _, d in g1.nodes(data=True) if d.get("label") == "Class"]
    assert sorted(c["name"] for c in classes) == sorted(result.class_names)
    assert any("pixel_r" in n for n in data["nodes"])


def test_one_answer_to_which_classes_are_alike(graph: Graph, tiny_checkpoint: Path) -> None:
    """The audit's communities are those `analyze communities` gives: computed on the same
    (complete) graph by default, and read back once stored, whichever graph they were made on."""
    ingest(Workspace(graph, model=tiny_checkpoint, run="alike", limit=400, device="cpu"), edges=("coactivation",))
    runner = CliRunner()
    r = runner.invoke(app, ["audit", "confusion", "--run", "alike", "--json", "--no-plots"])
    assert r.exit_code == 0, r.output
    audited = json.loads(r.stdout)["communities"]
    fresh = analyze_communities(Workspace(graph, run="alike", device="cpu"), seed=0, write=False)
    assert audited["graph"] == "complete" == fresh.graph
    assert audited["modularity"] == pytest.approx(fresh.modularity, abs=1e-9)
    assert [c["classes"] for c in audited["list"]] == [c["classes"] for c in fresh.communities]
    stored = analyze_communities(Workspace(graph, run="alike", device="cpu"), seed=3, graph_kind="stored")
    r = runner.invoke(app, ["audit", "confusion", "--run", "alike", "--no-plots"])
    assert r.exit_code == 0 and f"modularity {stored.modularity:.3f}" in r.output and "as stored by" in r.output, r.output
    audited = json.loads(runner.invoke(app, ["audit", "confusion", "--run", "alike", "--json", "--no-plots"]).stdout)["communities"]
    assert audited["graph"] == "stored" and audited["modularity"] == pytest.approx(stored.modularity, abs=1e-9)
    assert sorted(map(sorted, (c["classes"] for c in audited["list"]))) == sorted(map(sorted, (c["classes"] for c in stored.communities)))
    r = runner.invoke(app, ["audit", "confusion", "--run", "alike", "--json", "--no-plots", "--graph", "complete"])
    assert json.loads(r.stdout)["communities"]["modularity"] == pytest.approx(fresh.modularity, abs=1e-9)  # asked for: computed
