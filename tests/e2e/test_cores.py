"""Switch-Gate core units recorded in the graph; coupled NMF of a real model's activations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from deepatlas.cli.app import app
from deepatlas.db.graph import Graph
from deepatlas.explain.switchgate import balanced_holding_rate, holding_rate, yb_holding_rate
from deepatlas.models import load_checkpoint, save_checkpoint
from deepatlas.workflows.build import ingest
from deepatlas.workflows.cores import default_gate_layer, experiment_switchgate
from deepatlas.workspace import Workspace
from tests.helpers import pixels

pytestmark = pytest.mark.e2e
runner = CliRunner()


def test_switchgate_records_core_units(neo4j_server, tiny_checkpoint: Path) -> None:  # type: ignore[no-untyped-def]
    with Graph(autostart=False) as g:
        ingest(Workspace(g, model=tiny_checkpoint, run="cores", limit=600, device="cpu"), edges=("coactivation",))
        res = experiment_switchgate(Workspace(g, run="cores", device="cpu"), "Trouser", steps=150, per_side=60, seeds=3,
                                    repeats=2, figure=False).to_json()
        assert res["layers"] == ["pool3"] and res["targets_layer"] == ["relu3"]
        kept = res["kept"]["pool3"]
        assert 0 < len(kept) <= 8 and 0.0 <= res["holding_rate"] <= 1.0
        # alpha tuned by default (the paper's procedure): the largest alpha tried that met the target
        search = res["alpha_search"]
        assert search["alpha_rule"] == "y_b >= 0.5" and search["holding_target"] == 0.995
        assert 1 <= len(search["alpha_search"]) <= 5 and res["params"]["scores"] == "probs"
        met = [t["alpha"] for t in search["alpha_search"] if t["met"]]
        assert search["target_reached"] == bool(met)
        assert res["alpha"] == (max(met) if met else search["alpha_search"][0]["alpha"])
        assert len(res["random_holding_rate_yb"]["values"]) == 3 and len(res["repeats"]["holding_rate_yb"]) == 2
        assert res["positives"] == res["negatives"] == 60
        counts = res["repeats"]["kept_count"]["pool3"]
        assert all(1 <= n <= 2 for n in counts.values()) and {int(u) for u in counts} >= set(kept)
        assert set(res["repeats"]["kept_in_every_repeat"]["pool3"]) <= set(kept)
        stored = g.read("MATCH (x:Experiment {key: $k})-[t:TARGETS]->(n:Neuron) RETURN n.index AS i ORDER BY i", {"k": res["experiment"]})
        assert [r["i"] for r in stored] == sorted(kept)
        # a fixed alpha, the logits and a fixed w_b through the CLI: one fit, no search
        r = runner.invoke(app, ["experiment", "switchgate", "--class", "Trouser", "--run", "cores", "--alpha", "0.02",
                                "--scores", "logits", "--fixed-wb", "--steps", "30", "--per-side", "30", "--seeds", "2",
                                "--device", "cpu", "--no-record", "--json"])
        assert r.exit_code == 0, r.output
        fixed = json.loads(r.stdout)
        assert fixed["alpha"] == 0.02 and fixed["alpha_search"] is None and fixed["w_b"] == 1.0
        assert fixed["params"]["scores"] == "logits" and fixed["params"]["train_wb"] is False
        r = runner.invoke(app, ["experiment", "switchgate", "--class", "Trouser", "--run", "cores", "--max-fits", "2",
                                "--steps", "20", "--per-side", "30", "--seeds", "2", "--device", "cpu", "--no-record"])
        assert r.exit_code == 0, r.output
        text = " ".join(r.output.split())  # the console wraps lines
        assert "paper's rule y_b >= 0.5" in text and "arg-max rule" in text, r.output
        assert "tuned to holding >= 0.995 by the y_b >= 0.5 rule" in text and "tried: 0.0001 (" in text, r.output
        r = runner.invoke(app, ["experiment", "switchgate", "--class", "Trouser", "--run", "cores", "--alpha", "lots"])
        assert r.exit_code == 1 and "'auto'" in r.output, r.output
        curve = res["removal_curve"]
        assert curve["layer"] == "pool3" and len(curve["ordered"]) == 9
        assert curve["ordered"][0] == 1.0  # all open: the positives are, by definition, predicted as the class
        assert curve["random_mean"][0] == 1.0
        assert len(curve["random_mean"]) == 9
    # the reported holding rate is the model's own verdict with only those filters open
    ckpt = load_checkpoint(tiny_checkpoint)
    from deepatlas.data import load_fashion_mnist

    x = ckpt.normalize(pixels(load_fashion_mnist("test").subset(600)))
    with torch.no_grad():
        preds = ckpt.model(x).argmax(1)
    gen = torch.Generator().manual_seed(0)  # D'_c as the workflow draws it for seed 0
    positives, others = torch.nonzero(preds == 1).flatten(), torch.nonzero(preds != 1).flatten()
    pos = x[positives[torch.randperm(len(positives), generator=gen)[:60]].sort().values]
    neg = x[others[torch.randperm(len(others), generator=gen)[:60]].sort().values]
    mask = torch.zeros(8)
    mask[kept] = 1
    assert holding_rate(ckpt.model, pos, 1, {"pool3": mask}) == pytest.approx(res["positive_holding_rate"])
    assert balanced_holding_rate(ckpt.model, torch.cat([pos, neg]), 1, {"pool3": mask}) == pytest.approx(res["holding_rate"])
    assert yb_holding_rate(ckpt.model, torch.cat([pos, neg]), 60, 1, {"pool3": mask}, res["w_b"],
                           res["params"]["sd"]) == pytest.approx(res["holding_rate_yb"])
    assert default_gate_layer(ckpt.model, x[:1]) == "pool3"


def test_factors_and_compare(tiny_checkpoint: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["explain", "factors", "--model", str(tiny_checkpoint), "-r", "1", "-r", "4", "--images", "200",
                            "--iters", "60", "--device", "cpu", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert [row["rank"] for row in res["ranks"]] == [1, 4]
    assert res["ranks"][1]["relative_error"] < res["ranks"][0]["relative_error"]  # more factors fit better
    assert set(res["ranks"][0]["rmse"]) == {"pixels", "relu1", "relu2", "relu3", "relu4"}
    assert res["units"] == "maps" and res["rows"]["relu1"]["source"] == "pool1"
    assert res["rows"]["relu1"]["rows"] == 4 * 14 * 14 and res["rows"]["relu4"]["rows"] == 16  # channels x pooled positions
    for path in res["figures"].values():
        assert Path(path).stat().st_size > 5_000
    r = runner.invoke(app, ["explain", "factors", "--model", str(tiny_checkpoint), "-r", "1", "-r", "4", "--images", "200",
                            "--iters", "60", "--device", "cpu", "--out", str(tmp_path)], terminal_width=80)
    assert r.exit_code == 0, r.output
    lines = {line.split("│")[1].strip(): line for line in r.output.splitlines() if line.count("│") > 3}
    assert {"all layers", "pixels", "relu1", "relu4"} <= set(lines), r.output  # one row per layer, never cut to "rel..."
    assert f"{res['ranks'][1]['rmse']['relu4']:.4f}" in lines["relu4"]
    # a second checkpoint (different weights) to compare against
    ckpt = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        for p in ckpt.model.parameters():
            p.mul_(0.5)
    other = save_checkpoint(tmp_path / "other.pt", ckpt.model, ckpt.arch, ckpt.arch_config,
                            {k: v for k, v in ckpt.meta.items() if k != "weights_sha256"})
    r = runner.invoke(app, ["explain", "compare", str(tiny_checkpoint), str(other), "-r", "2", "--images", "100",
                            "--iters", "30", "--device", "cpu", "--out", str(tmp_path / "cmp"), "--json"])
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.stdout)["ranks"]) == {tiny_checkpoint.name, "other.pt"}
    r = runner.invoke(app, ["explain", "compare", str(tiny_checkpoint)])
    assert r.exit_code == 1 and "at least two" in r.output
    # a missing second checkpoint is refused before the first one is factored (no output folder appears)
    r = runner.invoke(app, ["explain", "compare", str(tiny_checkpoint), str(tmp_path / "full.pt"), "--device", "cpu",
                            "--out", str(tmp_path / "never")])
    assert r.exit_code == 1 and "full.pt does not exist" in r.output
    assert not (tmp_path / "never").exists()
