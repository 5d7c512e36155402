"""ResNet-18 through the CLI into the real server: trained (briefly), ingested blockwise.

Small on purpose (1,024 training images, 200 ingested): what is checked is the path — the
stem and the eight residual blocks captured whole (1,984 conv units), co-activation in several
passes with the same edges a dense pass chooses, influence through the residual sums — not the
accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deepatlas.cli.app import app
from deepatlas.data import load_fashion_mnist
from deepatlas.db.graph import Graph
from deepatlas.db.runs import resolve_run
from deepatlas.ingest.coactivation import compute_coactivation
from deepatlas.ingest.pairs import SparsifyParams, select_pairs
from deepatlas.models import load_checkpoint

pytestmark = pytest.mark.e2e


def test_resnet18_trained_and_ingested_blockwise(neo4j_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    ckpt_path = tmp_path / "resnet.pt"
    r = runner.invoke(app, ["train", "--arch", "resnet18", "--epochs", "1", "--limit", "1024", "--out", str(ckpt_path),
                            "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["test_accuracy"] > 0.15  # 8 steps: above chance (0.1); the path is what is tested
    r = runner.invoke(app, ["ingest", "--model", str(ckpt_path), "--limit", "200", "--run", "resnet",
                            "--between-samples", "0", "--attribution-per-class", "2", "--max-matrix-mb", "15",
                            "--min-r", "0.95", "--top-k", "2", "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["nodes"]["Neuron"] == 1984
    assert "more passes" in report["seconds"]  # 1,994 rows of 15 MB each (less the pixel statistics): several passes
    assert report["pairs"]["tested"] > report["pairs"]["above_floor"] >= report["pairs"]["kept"]  # every filter reported

    ckpt = load_checkpoint(ckpt_path)
    dense = compute_coactivation(ckpt.model, load_fashion_mnist("test").subset(200), normalize=ckpt.normalize,
                                 max_matrix_mb=None)
    assert dense.units.r is not None
    m = dense.n_hidden + 10
    i, _, _ = select_pairs(dense.units.r.numpy(), np.arange(m) >= m - 10, dense.units.dead_x.numpy(),
                           SparsifyParams(min_abs_r=0.95, top_k=2), n=200)
    with Graph(autostart=False) as g:
        run = resolve_run(g, "resnet")
        hidden = g.read("MATCH (a:Neuron {run: $k})-[e:COACTIVATES]->(b) WHERE b:Neuron OR b:Class "
                        "RETURN count(e) AS c", {"k": run.key})[0]["c"]
        classes = g.read("MATCH (a:Class {run: $k})-[e:COACTIVATES]->(b:Class) RETURN count(e) AS c", {"k": run.key})[0]["c"]
        assert hidden + classes == len(i)  # the blockwise passes stored the dense choice
        # influence reached the first block through the 8 residual sums
        infl = g.read("MATCH (n:Neuron {run: $k, layer: 'layer1.0'})-[e:INFLUENCES]->(:Class) "
                      "RETURN count(e) AS c, sum(abs(e.score)) AS s", {"k": run.key})[0]
        assert infl["c"] > 0 and infl["s"] > 0
    r = runner.invoke(app, ["query", "drivers", "--class", "Trouser", "-k", "3", "--run", "resnet", "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["drivers"]) == 3
