"""Explanations of single images and the disagreement report, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepatlas.cli.app import app
from deepatlas.data import load_fashion_mnist
from deepatlas.db.graph import Graph
from deepatlas.explain.influence import InfluentialScores
from deepatlas.models import load_checkpoint
from deepatlas.workflows.build import ingest
from deepatlas.workspace import Workspace

pytestmark = pytest.mark.e2e
runner = CliRunner()


def test_heatmap_and_filters(tiny_checkpoint: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["explain", "heatmap", "--image", "3", "--model", str(tiny_checkpoint), "--device", "cpu",
                            "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert len(res["classes"]) == 10 and Path(res["figure"]).stat().st_size > 20_000
    # the numbers are the influential scores of the explain layer, summed by sign
    ckpt = load_checkpoint(tiny_checkpoint)
    x = ckpt.normalize(load_fashion_mnist("test").take([3]))
    s = InfluentialScores(ckpt.model).attribute(x, target=4)[0]
    coat = next(c for c in res["classes"] if c["class"] == "Coat")
    assert coat["positive"] == pytest.approx(float(s[s > 0].sum()), rel=1e-4)
    r = runner.invoke(app, ["explain", "heatmap", "--image", "3", "--model", str(tiny_checkpoint), "--device", "cpu",
                            "--out", str(tmp_path / "shared"), "--shared-scale", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["classes"] == res["classes"]  # the same numbers, drawn on one scale
    r = runner.invoke(app, ["explain", "filters", "--image", "3", "--model", str(tiny_checkpoint), "--device", "cpu",
                            "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert set(res["layers"]) == {"relu1", "relu2", "relu3", "relu4"} and len(res["layers"]["relu1"]) == 4


def test_explain_errors(tiny_checkpoint: Path) -> None:
    r = runner.invoke(app, ["explain", "heatmap", "--image", "10000", "--model", str(tiny_checkpoint)])
    assert r.exit_code == 1 and "out of range" in r.output and "0..9999" in r.output
    r = runner.invoke(app, ["explain", "heatmap", "--image", "1", "--class", "Hat", "--model", str(tiny_checkpoint)])
    assert r.exit_code == 1 and "no class 'Hat'" in r.output
    r = runner.invoke(app, ["explain", "heatmap", "--image", "1", "--method", "lrp", "--model", str(tiny_checkpoint)])
    assert r.exit_code == 1 and "method must be one of" in r.output


def test_disagreement_report(neo4j_server, tiny_checkpoint: Path) -> None:  # type: ignore[no-untyped-def]
    with Graph(autostart=False) as g:
        ingest(Workspace(g, model=tiny_checkpoint, run="disagree", limit=300, device="cpu"), attribution_per_class=10, between_samples=10)
    for by in ("influence", "gradient"):
        r = runner.invoke(app, ["explain", "disagree", "--run", "disagree", "--by", by, "-k", "5", "--min-r", "0", "--json"])
        assert r.exit_code == 0, r.output
        res = json.loads(r.stdout)
        for row in res[f"correlated_not_{by}"]:
            assert row["r_rank"] <= 5 and row[f"{by}_rank"] > 5
        for row in res[f"{by}_not_correlated"]:
            assert row[f"{by}_rank"] <= 5 and row["r_rank"] > 5
    with Graph(autostart=False) as g:
        ingest(Workspace(g, model=tiny_checkpoint, run="no-attrib", limit=300, device="cpu"), edges=("coactivation",))
    r = runner.invoke(app, ["explain", "disagree", "--run", "no-attrib"])
    assert r.exit_code == 1 and "has no INFLUENCES edges" in r.output


def test_feature_perturb_and_sweep(tiny_checkpoint: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["explain", "feature", "--image", "5", "--model", str(tiny_checkpoint), "--device", "cpu",
                            "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["layer"] in {"relu1", "relu2", "relu3"} and len(res["region"]) == 4 and res["score"] > 0
    x0, y0, x1, y1 = res["region"]
    assert 0 <= x0 < x1 <= 28 and 0 <= y0 < y1 <= 28
    r = runner.invoke(app, ["explain", "perturb", "--image", "5", "--toward", "bag", "--steps", "8", "--model",
                            str(tiny_checkpoint), "--device", "cpu", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["toward"] == "Bag" and len(res["target_prob"]) == 9
    assert res["target_prob"][1] > res["target_prob"][0]  # the first step moves toward Bag
    r = runner.invoke(app, ["explain", "perturb", "--sweep", "10", "--mode", "iterative", "--steps", "4", "--step-size", "0.05",
                            "--model", str(tiny_checkpoint), "--device", "cpu", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert len(res["success"]) == 10 and all(res["success"][i][i] is None for i in range(10))
    assert Path(res["figure"]).stat().st_size > 10_000
    # the default sweep: the thesis' single step per step size; success and induced error grow with eps
    r = runner.invoke(app, ["explain", "perturb", "--sweep", "10", "--eps", "0.01,1000000", "--model", str(tiny_checkpoint),
                            "--device", "cpu", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["mode"] == "single-step" and res["output"] == "prob" and res["pairs"] == res["images"] * 9
    assert res["success"][0] <= 0.05 and res["induced_error"][0] <= 0.05  # a tiny step changes almost nothing
    assert res["induced_error"][1] > res["induced_error"][0] and res["success"][1] > res["success"][0]
    assert Path(res["figure"]).stat().st_size > 10_000
    for bad, msg in ((["--image", "5", "--toward", "Bag", "--step-size", "0"], "step-size must be > 0"),
                     (["--image", "99999", "--toward", "Bag"], "out of range"),
                     (["--image", "5", "--toward", "Hat"], "no class 'Hat'"),
                     (["--image", "5"], "give --image and --toward")):
        r = runner.invoke(app, ["explain", "perturb", *bad, "--model", str(tiny_checkpoint), "--device", "cpu"])
        assert r.exit_code == 1 and msg in r.output, r.output
