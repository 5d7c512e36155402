"""`deepatlas inspect`: layers, method support and estimates on stock architectures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from deepatlas.cli.app import app
from deepatlas.workflows.inspect import inspect_model


def test_stock_resnet18_every_method_works_and_the_plan_adds_up() -> None:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    rep = inspect_model(resnet18(num_classes=5), torch.rand(2, 3, 224, 224), images=500, max_matrix_mb=64)
    assert rep.methods == dict.fromkeys(("coactivation", "influence", "gradient", "knockout", "activate", "switchgate"))
    assert rep.default_layers[:3] == ["relu", "layer1.0", "layer1.1"]  # the stem, then the blocks
    inner = [r for r in rep.layers if r.name.startswith("layer1.0.relu#")]
    assert [(r.kind, r.units, r.block, r.default) for r in inner] == [("conv", 64, "layer1.0", False)] * 2
    block = next(r for r in rep.layers if r.name == "layer1.0")
    assert (block.units, block.block, block.default) == (64, "layer1.0", True)
    est = rep.estimate
    assert est is not None
    assert est.units == 64 + 2 * 64 + 2 * 128 + 2 * 256 + 2 * 512 and est.classes == 5
    m = est.units + est.classes
    # a 32x32 grid per channel would take more than a quarter of the 64 MB: auto takes the grid that fits
    assert est.pixels * m * 8 / 2**20 <= 16 and est.problem is None
    assert est.pixel_mb == round(est.pixels * m * 8 / 2**20, 1)
    assert est.memory_mb["forward+stats"] >= est.comoment_mb + est.pixel_mb  # the accumulators are in the stage's peak
    assert est.peak_mb == pytest.approx(est.baseline_mb + max(est.memory_mb.values()), abs=0.2)
    assert set(est.seconds) >= {"forward+stats", "gradient", "influence", "write"}
    forced = inspect_model(resnet18(num_classes=5), torch.rand(2, 3, 224, 224), max_matrix_mb=32, pixel_grid=(32, 32)).estimate
    assert forced is not None and forced.problem is not None and "pixel statistics alone need" in forced.problem
    # the caps bound the edges whatever the data: hidden-class all (small model), unit-unit <= M * 32 / 2
    assert est.edges_max["COACTIVATES"] == m * 32 // 2 + est.units * 5 + m * 16


def test_a_plan_that_does_not_fit_the_machine_is_refused_with_the_flag_that_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    import deepatlas.workflows.inspect as insp

    monkeypatch.setattr(insp, "available_mb", lambda: 100.0)  # a machine with 100 MB free
    from torchvision.models import resnet18

    rep = inspect_model(resnet18(num_classes=5), torch.rand(2, 3, 64, 64), images=500)
    assert rep.estimate is not None and rep.estimate.problem is not None
    assert "100 MB are free" in rep.estimate.problem and "--" in rep.estimate.problem


def test_vision_transformer_says_why_influence_does_not_work() -> None:
    from torchvision.models import VisionTransformer

    vit = VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16, num_classes=3)
    rep = inspect_model(vit, torch.rand(2, 3, 32, 32))
    assert rep.methods["influence"] is not None and "multi_head_attention_forward" in rep.methods["influence"]
    assert rep.methods["coactivation"] is None and rep.methods["knockout"] is None and rep.methods["gradient"] is None
    assert [r.kind for r in rep.layers if r.default] == ["tokens"]  # the encoder block
    assert rep.default_layers == ["encoder.layers.encoder_layer_0"]


def test_cli_inspect_json(tiny_checkpoint: Path) -> None:
    r = CliRunner().invoke(app, ["inspect", "--model", str(tiny_checkpoint), "--images", "1000", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["default_layers"] == ["relu1", "relu2", "relu3", "relu4"]
    assert out["estimate"]["units"] == 4 + 8 + 8 + 16 and out["estimate"]["pixels"] == 784
    assert all(v is None for v in out["methods"].values())
    assert "ranks" not in out["estimate"]["memory_mb"] and out["estimate"]["correlation"] == "pearson"
    bad = CliRunner().invoke(app, ["inspect", "--model", str(tiny_checkpoint), "--pixel-grid", "7by7"])
    assert bad.exit_code == 1 and "ROWSxCOLS" in bad.output
    # Spearman: the rank pass and its sketches are planned; 1,000 images <= 2,048: the sample is every image
    r = CliRunner().invoke(app, ["inspect", "--model", str(tiny_checkpoint), "--images", "1000", "--correlation", "spearman",
                                 "--json"])
    assert r.exit_code == 0, r.output
    est = json.loads(r.stdout)["estimate"]
    assert est["correlation"] == "spearman" and est["rank_bins"] > 0 and est["memory_mb"]["ranks"] > 0
    assert est["memory_mb"]["forward+stats"] > out["estimate"]["memory_mb"]["forward+stats"]  # the sketches stay
    bad = CliRunner().invoke(app, ["inspect", "--model", str(tiny_checkpoint), "--correlation", "kendall"])
    assert bad.exit_code == 2 and "pearson or spearman" in bad.output


def test_cli_inspect_takes_a_stock_torchvision_model_and_refuses_a_bad_spec() -> None:
    r = CliRunner().invoke(app, ["inspect", "--model", "torchvision:resnet18", "--num-classes", "4", "--input-size", "3x64x64",
                                 "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["input_shape"] == [3, 64, 64] and out["classes"] == 4
    assert out["default_layers"][:2] == ["relu", "layer1.0"] and out["methods"]["influence"] is None
    bad = CliRunner().invoke(app, ["inspect", "--model", "torchvision:nosuch"])
    lines = [x for x in bad.output.splitlines() if x.strip()]
    assert bad.exit_code == 1 and lines[0].startswith("error:") and "nosuch" in lines[0] and "Traceback" not in bad.output
