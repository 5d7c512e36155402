"""`ingest --correlation spearman` end to end: the stored rho against scipy on the same values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from typer.testing import CliRunner

from deepatlas.cli.app import app
from deepatlas.data import load_fashion_mnist
from deepatlas.db.graph import Graph
from deepatlas.db.runs import resolve_run
from deepatlas.ingest.capture import ActivationRecorder
from deepatlas.models import load_checkpoint


def test_a_spearman_run_stores_rho_within_its_stated_bound(graph: Graph, tiny_checkpoint: Path, tmp_path: Path) -> None:
    n = 2500  # more than the 2,048 sample images: the counting pass runs and rho is binned
    r = CliRunner().invoke(app, ["ingest", "--model", str(tiny_checkpoint), "--limit", str(n), "--edges", "coactivation",
                                 "--correlation", "spearman", "--run", "rho", "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    pairs = report["pairs"]
    assert pairs["correlation"] == "spearman" and 0 < pairs["rank_error_bound"] < 1, pairs
    info = resolve_run(graph, "rho")
    assert info.params["correlation"] == "spearman"

    r = CliRunner().invoke(app, ["query", "drivers", "--class", "Trouser", "--run", "rho", "-k", "5", "--json"])
    assert r.exit_code == 0, r.output
    drivers = json.loads(r.stdout)
    assert drivers["correlation"] == "spearman" and len(drivers["drivers"]) == 5
    text = CliRunner().invoke(app, ["query", "drivers", "--class", "Trouser", "--run", "rho", "-k", "5"])
    assert "Spearman" in text.output, text.output

    # the same node values computed here, ranked by scipy
    ckpt = load_checkpoint(tiny_checkpoint)
    data = load_fashion_mnist("test").subset(n)
    model = ckpt.model.eval()
    with torch.no_grad():
        x = ckpt.normalize(data.take(np.arange(n)))
        rec = ActivationRecorder(model, list(info.params["layers"]), example=x[:2])
        acts, out = rec.record(x)
    offsets = dict(zip((s.name for s in rec.layers), np.cumsum([0] + [s.size for s in rec.layers]).tolist(), strict=False))
    trouser = data.class_names.index("Trouser")
    probs = out.softmax(1)[:, trouser].numpy()
    for row in drivers["drivers"]:
        col = acts[:, offsets[row["layer"]] + row["unit"]].numpy()
        want = spearmanr(col, probs).statistic
        assert abs(row["r"] - want) <= max(1e-6, pairs["rank_error_bound"]), (row, want)
        assert abs(row["r"] - want) < 0.01  # and in practice far inside the worst-case bound

    # every command that prints r says which correlation it is (issue 24 item 3)
    for argv in (["analyze", "overlap", "--dry-run"], ["analyze", "centrality", "--dry-run"],
                 ["analyze", "communities", "--graph", "stored", "--dry-run"], ["audit", "confusion", "--no-plots"]):
        r = CliRunner().invoke(app, [*argv, "--run", "rho", "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["correlation"] == "spearman", argv
        text = CliRunner().invoke(app, [*argv, "--run", "rho"])
        assert text.exit_code == 0 and "Spearman" in text.stdout, (argv, text.output)
    text = CliRunner().invoke(app, ["runs", "show", "rho"])
    assert "co-activation by Spearman's rho" in text.stdout, text.output
    r = CliRunner().invoke(app, ["export", "json", "--run", "rho", "-o", str(tmp_path / "rho.json"), "--json"])
    assert r.exit_code == 0, r.output
    exported = json.loads(Path(json.loads(r.stdout)["path"]).read_text())
    assert exported["graph"]["correlation"] == "spearman"
