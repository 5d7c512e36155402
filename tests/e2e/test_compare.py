"""`deepatlas compare` and `audit diff` on cases known by hand (issue 26): a run against a run
of the same checkpoint, a checkpoint whose channels were permuted, and one with a class's final
weights zeroed. A real server; the numbers checked against independent numpy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from deepatlas.cli.app import app
from deepatlas.data import load_fashion_mnist
from deepatlas.db.graph import Graph
from deepatlas.graphops.cka import linear_cka
from deepatlas.ingest.capture import ActivationRecorder
from deepatlas.models import load_checkpoint, save_checkpoint
from deepatlas.workflows.build import ingest
from deepatlas.workflows.compare import compare_runs
from deepatlas.workspace import Workspace

pytestmark = pytest.mark.e2e
N = 400
EDGES = ("coactivation",)
runner = CliRunner()


def _variant(tiny: Path, out: Path, change) -> Path:  # type: ignore[no-untyped-def]
    ckpt = load_checkpoint(tiny)
    with torch.no_grad():
        change(ckpt.model)
    return save_checkpoint(out, ckpt.model, ckpt.arch, ckpt.arch_config,
                           {k: v for k, v in ckpt.meta.items() if k != "weights_sha256"})


@pytest.fixture(scope="module")
def runs(neo4j_server, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("compare")
    g = torch.Generator().manual_seed(7)
    perm2, perm4 = torch.randperm(8, generator=g), torch.randperm(16, generator=g)

    def permute(m: torch.nn.Module) -> None:  # the same function, its relu2 and relu4 units reordered
        m.conv2.weight.copy_(m.conv2.weight[perm2])
        m.conv2.bias.copy_(m.conv2.bias[perm2])
        m.conv3.weight.copy_(m.conv3.weight[:, perm2])
        m.fc1.weight.copy_(m.fc1.weight[perm4])
        m.fc1.bias.copy_(m.fc1.bias[perm4])
        m.fc2.weight.copy_(m.fc2.weight[:, perm4])

    def no_sandal(m: torch.nn.Module) -> None:  # class 5's logit fixed at 0: its images go elsewhere
        m.fc2.weight[5].zero_()
        m.fc2.bias[5] = 0.0

    permuted = _variant(tiny_checkpoint, folder / "permuted.pt", permute)
    zeroed = _variant(tiny_checkpoint, folder / "no-sandal.pt", no_sandal)
    with Graph(autostart=False) as graph:
        for name, model in (("cmp-a", tiny_checkpoint), ("cmp-a2", tiny_checkpoint), ("cmp-perm", permuted),
                            ("cmp-zero", zeroed)):
            ingest(Workspace(graph, model=model, run=name, limit=N, device="cpu"), edges=EDGES, replace=True)
    return {"perm2": perm2, "perm4": perm4}


def test_a_run_against_the_same_checkpoint_changes_nothing(graph: Graph, runs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rep = compare_runs(Workspace(graph, device="cpu", out_dir=tmp_path), "cmp-a", "cmp-a2")
    cka = np.array(rep.cka_means)
    assert np.allclose(np.diag(cka), 1.0, atol=1e-9)
    assert np.allclose(np.diag(np.array(rep.cka_flattened)), 1.0, atol=1e-9)
    for m in rep.layer_matches:
        assert m["layer_base"] == m["layer_head"]
    one = [m for m in rep.matches if m["kind"] == "one-to-one"]
    assert one and all(m["a"].split("/n/")[1] == m["b"].split("/n/")[1] and m["r"] == pytest.approx(1.0, abs=1e-9) for m in one)
    assert all(c["overlap"] == 1.0 for c in rep.class_drift)
    assert all(p["mistakes_change"] == 0 and p["jaccard_change"] == 0 for p in rep.pair_drift)
    assert rep.communities["adjusted_rand"] == pytest.approx(1.0)
    stored = graph.read("MATCH (c:Comparison {base: 'cmp-a', head: 'cmp-a2'})-[:BASE]->(r:Run) "
                        "OPTIONAL MATCH ()-[m:MATCHES {comparison: c.key}]->() RETURN r.name AS base, count(m) AS n")
    assert stored == [{"base": "cmp-a", "n": len(rep.matches)}]
    for name in ("cka", "drift"):
        assert Path(rep.figures[name]).read_bytes()[:4] == b"\x89PNG"


def test_cka_equals_the_numpy_formula_and_the_matching_recovers_a_permutation(graph: Graph, runs, tiny_checkpoint: Path) -> None:  # type: ignore[no-untyped-def]
    rep = compare_runs(Workspace(graph, device="cpu"), "cmp-a", "cmp-perm", write=False, figures=False)
    # independent: every image's units in numpy, the full-data formula
    images = load_fashion_mnist("test").subset(N)
    ckpt = load_checkpoint(tiny_checkpoint)
    x = ckpt.normalize(images.take(range(N)))
    rec = ActivationRecorder(ckpt.model, rep.layers_base, example=x[:1])
    acts = rec.record(x)[0].double().numpy()
    bounds = np.cumsum([0] + [s.size for s in rec.layers])
    for i in range(len(rec.layers)):
        for j in range(len(rec.layers)):
            want = linear_cka(acts[:, bounds[i]:bounds[i + 1]], acts[:, bounds[j]:bounds[j + 1]])
            assert rep.cka_means[i][j] == pytest.approx(want, abs=1e-6)  # permutation leaves CKA as it was
    inverse = {"relu2": torch.argsort(runs["perm2"]).tolist(), "relu4": torch.argsort(runs["perm4"]).tolist()}
    for m in (m for m in rep.matches if m["kind"] == "one-to-one"):
        layer, a = m["a"].split("/n/")[1].split("/")
        _, b = m["b"].split("/n/")[1].split("/")
        want = inverse[layer][int(a)] if layer in inverse else int(a)
        assert int(b) == want and m["r"] == pytest.approx(1.0, abs=1e-6), m


def test_a_class_silenced_in_the_head_is_drift_and_fails_the_audit(graph: Graph, runs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = runner.invoke(app, ["audit", "diff", "--base", "cmp-a", "--head", "cmp-zero", "--max-confusion-rise", "5",
                            "--device", "cpu", "--json"])
    assert r.exit_code == 1, r.output
    res = json.loads(r.stdout)
    assert res["passed"] is False and "rose by more than 5 mistakes" in res["failures"][0]
    assert "Sandal" in (res["confusion_rises"][0]["a"], res["confusion_rises"][0]["b"])
    sandal = next(c for c in res["class_drift"] if c["class"] == "Sandal")
    others = [c["overlap"] for c in res["class_drift"] if c["class"] != "Sandal"]
    assert sandal["overlap"] < min(others), res["class_drift"]
    r = runner.invoke(app, ["audit", "diff", "--base", "cmp-a", "--head", "cmp-a2", "--max-confusion-rise", "0",
                            "--min-cka", "0.99", "--device", "cpu"])
    assert r.exit_code == 0 and "PASS" in r.output, r.output
    r = runner.invoke(app, ["compare", "--base", "cmp-a", "--head", "cmp-zero", "--device", "cpu", "--out", str(tmp_path)],
                      env={"COLUMNS": "120"})
    assert r.exit_code == 0, r.output
    assert "class pairs confused more" in r.output and "Sandal" in r.output
    rows = CliRunner().invoke(app, ["query", "run", "drivers_side_by_side", "-p", "base=cmp-a", "-p", "head=cmp-zero",
                                    "-p", "class=Sandal", "-p", "k=3", "--json"])
    assert rows.exit_code == 0 and len(json.loads(rows.stdout)) == 3, rows.output


def test_runs_over_other_images_are_refused(graph: Graph, runs, tiny_checkpoint: Path) -> None:  # type: ignore[no-untyped-def]
    ingest(Workspace(graph, model=tiny_checkpoint, run="cmp-fewer", limit=N // 2, device="cpu"), edges=EDGES, replace=True)
    r = runner.invoke(app, ["compare", "--base", "cmp-a", "--head", "cmp-fewer", "--device", "cpu"])
    assert r.exit_code == 1 and "other images (images: 400 vs 200)" in r.output and "Traceback" not in r.output
    # the same images, but rho against r: class drift would mix the measure with the model
    ingest(Workspace(graph, model=tiny_checkpoint, run="cmp-rho", limit=N, device="cpu"), edges=EDGES, replace=True,
           correlation="spearman")
    r = runner.invoke(app, ["compare", "--base", "cmp-a", "--head", "cmp-rho", "--device", "cpu"])
    assert r.exit_code == 1 and "--correlation pearson" in r.output and "Traceback" not in r.output, r.output


def test_deleting_a_run_deletes_the_comparisons_it_was_part_of(graph: Graph, runs) -> None:  # type: ignore[no-untyped-def]
    from deepatlas.db.runs import delete_run

    compare_runs(Workspace(graph, device="cpu"), "cmp-a2", "cmp-perm", flattened=False, figures=False)
    count = "MATCH (c:Comparison {head: 'cmp-perm'}) RETURN count(c) AS n"
    assert graph.read(count)[0]["n"] == 1
    delete_run(graph, "cmp-perm")
    assert graph.read(count)[0]["n"] == 0
    assert graph.read("MATCH ()-[m:MATCHES]->(b:Neuron) WHERE b.run STARTS WITH 'cmp-perm@' RETURN count(m) AS n")[0]["n"] == 0
    assert graph.read("MATCH (c:Comparison {base: 'cmp-a', head: 'cmp-a2'}) RETURN count(c) AS n")[0]["n"] == 1  # others kept
