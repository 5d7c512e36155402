"""Experiments on the real model of a stored run, recorded in the real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from deepatlas.cli.app import app
from deepatlas.data import load_fashion_mnist
from deepatlas.db.graph import Graph
from deepatlas.db.queries import run_template
from deepatlas.errors import NotFoundError, UsageError
from deepatlas.explain import Intervention
from deepatlas.models import load_checkpoint
from deepatlas.workflows.analysis import analyze_communities, analyze_overlap
from deepatlas.workflows.build import ingest
from deepatlas.workflows.experiments import (
    experiment_activate,
    experiment_community,
    experiment_knockout,
    experiment_shared,
)
from deepatlas.workspace import Workspace
from tests.helpers import pixels

pytestmark = pytest.mark.e2e
RUN = "experiments"
N = 800


@pytest.fixture(scope="module")
def run_ready(neo4j_server, tiny_checkpoint: Path) -> Path:  # type: ignore[no-untyped-def]
    with Graph(autostart=False) as g:
        ingest(Workspace(g, model=tiny_checkpoint, run=RUN, limit=N, device="cpu"), edges=("coactivation",))
        analyze_communities(Workspace(g, run=RUN))
        analyze_overlap(Workspace(g, run=RUN), top_k=6)
    return tiny_checkpoint


def test_knockout_curve_is_recomputable_and_recorded(graph: Graph, run_ready: Path, tmp_path: Path) -> None:
    ws = Workspace(graph, run=RUN, device="cpu", out_dir=tmp_path)
    res = experiment_knockout(ws, "Trouser", by="coactivation", ks=(0, 2, 16), seeds=2).to_json()
    live = res["units_ranked"]
    assert res["layer"] == "relu4" and 2 < live <= 16
    assert res["top"]["k"] == [0, 2, min(16, live)]  # k beyond the live units is clipped
    assert res["top"]["class_error"][0] == res["bottom"]["class_error"][0]  # k = 0 is the plain model
    # recompute the top-2 point by hand with the model and the stored ranking
    ckpt = load_checkpoint(run_ready)
    data = load_fashion_mnist("test").subset(N)
    rows = run_template(graph, "class_drivers", {"run": RUN, "class": "Trouser", "k": 100})
    top2 = [r["unit"] for r in rows if r["layer"] == "relu4"][:2]
    preds = Intervention(ckpt.model).predict(ckpt.normalize(pixels(data)), {"relu4": top2})
    mask = data.labels == 1
    assert res["top"]["class_error"][1] == pytest.approx(float((preds[mask] != 1).float().mean()))
    assert Path(res["figure"]).stat().st_size > 10_000
    rec = graph.read("MATCH (x:Experiment {key: $k})-[t:TARGETS]->(n:Neuron) RETURN count(t) AS n, x.kind AS kind", {"k": res["experiment"]})
    assert rec[0]["kind"] == "knockout" and rec[0]["n"] == min(16, res["units_ranked"])
    on = graph.read("MATCH (x:Experiment {key: $k})-[:ON_CLASS]->(c) RETURN c.name AS name", {"k": res["experiment"]})
    assert [r["name"] for r in on] == ["Trouser"]
    assert any(r["key"] == res["experiment"] for r in run_template(graph, "experiments", {"run": RUN}))


def test_activate_only_answers_per_class(graph: Graph, run_ready: Path) -> None:
    res = experiment_activate(Workspace(graph, run=RUN, device="cpu"), ks=(1, 4, 16), figure=False).to_json()
    assert len(res["classes"]) == 10 and len(res["fraction_correct"]) == 3
    for i, f in enumerate(res["fraction_correct"]):
        assert f == sum(1 for c in res["classes"] if c["predicted"][i] == c["class"]) / 10
    for c in res["classes"]:
        if c["smallest_k"] is not None:
            assert c["predicted"][res["ks"].index(c["smallest_k"])] == c["class"]


def test_community_and_shared_ablation(graph: Graph, run_ready: Path) -> None:
    ws = Workspace(graph, run=RUN, device="cpu")
    res = experiment_community(ws, 0).to_json()
    assert res["units"] > 0 and len(res["per_class"]) == 10
    assert res["error_after"] >= 0 and all(abs(r["change"]) <= 1 for r in res["per_class"])
    pairs = graph.read("MATCH (a:Class)-[o:OVERLAPS]->(b:Class) WHERE a.run STARTS WITH $p AND o.shared > 0 "
                       "RETURN a.name AS a, b.name AS b ORDER BY o.shared DESC LIMIT 1", {"p": RUN + "@"})
    if pairs:
        sh = experiment_shared(ws, pairs[0]["a"], pairs[0]["b"], seeds=2)
        assert sh.shared_units and len(sh.random_same_size_mutual_mistakes["values"]) == 2
    with pytest.raises(NotFoundError, match="communities 0"):
        experiment_community(ws, 999)
    with pytest.raises(UsageError, match="two different classes"):
        experiment_shared(ws, "Bag", "bag")


def test_model_is_unchanged_after_experiments(run_ready: Path, graph: Graph) -> None:
    ckpt = load_checkpoint(run_ready)
    x = ckpt.normalize(pixels(load_fashion_mnist("test").subset(50)))
    before = ckpt.model(x)
    iv = Intervention(ckpt.model)
    with iv.knockout({"relu4": [0, 1, 2]}):
        pass
    iv.predict(x, {"relu4": [3]})
    assert torch.equal(ckpt.model(x), before)
    assert sum(len(m._forward_hooks) for m in ckpt.model.modules()) == 0


def test_pg_knockout_ranks_every_conv_filter(graph: Graph, run_ready: Path, tmp_path: Path) -> None:
    res = experiment_knockout(Workspace(graph, run=RUN, device="cpu", out_dir=tmp_path), "Trouser", ks=(0, 2), seeds=1,
                              record=False).to_json()
    assert res["by"] == "pg" and res["layer"] == "all"
    convs = graph.read("MATCH (l:Layer {run: $r, kind: 'conv'}) RETURN l.name AS name, l.size AS size ORDER BY l.position",
                       {"r": graph.read("MATCH (r:Run {name: $n}) RETURN r.key AS k", {"n": RUN})[0]["k"]})
    assert res["layers_ranked"] == [c["name"] for c in convs] and len(res["layers_ranked"]) > 1
    assert res["units_ranked"] == sum(c["size"] for c in convs)
    scores = [r["score"] for r in res["ranking"]]
    assert scores == sorted(scores, reverse=True) and scores[-1] >= 0
    # the strongest-2 and weakest-2 points, recomputed with the model and the reported ranking
    ckpt = load_checkpoint(run_ready)
    data = load_fashion_mnist("test").subset(N)
    mask = data.labels == 1
    for name, units in (("top", res["ranking"][:2]), ("bottom", res["ranking"][-2:])):
        chosen: dict[str, list[int]] = {}
        for u in units:
            lay, idx = u["unit"].split(":")
            chosen.setdefault(lay, []).append(int(idx))
        preds = Intervention(ckpt.model).predict(ckpt.normalize(pixels(data)), chosen)
        assert res[name]["class_error"][1] == pytest.approx(float((preds[mask] != 1).float().mean()))
        assert res[name]["error"][1] == pytest.approx(float((preds != data.labels).float().mean()))


def test_cli_experiments(run_ready: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["experiment", "activate", "-k", "7", "--run", RUN, "--device", "cpu", "--json", "--no-record"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["ks"] == [7] and len(out["classes"]) == 10 and "experiment" not in out
    r = runner.invoke(app, ["experiment", "knockout", "--class", "Nope", "--run", RUN])
    assert r.exit_code == 1 and "no class 'Nope'" in r.output
    r = runner.invoke(app, ["experiment", "knockout", "--class", "Bag", "--run", RUN, "--ks", "1,x"])
    assert r.exit_code == 1 and "--ks must be" in r.output
    r = runner.invoke(app, ["experiment", "knockout", "--class", "Bag", "--run", RUN, "--by", "influence"])
    assert r.exit_code == 1 and "no INFLUENCES edges" in r.output
    r = runner.invoke(app, ["experiment", "activate", "-k", "0", "--run", RUN])
    assert r.exit_code == 1 and "k must be >= 1" in r.output
