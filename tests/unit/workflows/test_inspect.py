"""`deepatlas inspect`: layers, method support and estimates on stock architectures."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from deepatlas.cli.app import app
from deepatlas.workflows.inspect import inspect_model


def test_stock_resnet18_every_method_works_and_the_estimate_adds_up() -> None:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    rep = inspect_model(resnet18(num_classes=5), torch.rand(2, 3, 224, 224), images=500, max_matrix_mb=64)
    assert rep.methods == dict.fromkeys(("coactivation", "influence", "gradient", "knockout", "activate", "switchgate"))
    assert rep.default_layers[:3] == ["relu", "layer1.0.relu#1", "layer1.0.relu#2"]
    shared = [r for r in rep.layers if r.name.startswith("layer1.0.relu#")]
    assert [(r.kind, r.units) for r in shared] == [("conv", 64), ("conv", 64)]
    est = rep.estimate
    assert est is not None
    assert est.units == 64 + 4 * 64 + 4 * 128 + 4 * 256 + 4 * 512 and est.classes == 5
    m = est.units + est.classes
    # a 32x32 grid per channel would take 92 MB of the 64 MB: auto takes the grid whose statistics fit a quarter
    assert est.pixel_grid == (3, 13, 13) and est.pixels == 507 and est.problem is None
    assert est.pixel_mb == round(507 * m * 8 / 2**20, 1) <= 16
    forced = inspect_model(resnet18(num_classes=5), torch.rand(2, 3, 224, 224), max_matrix_mb=64, pixel_grid=(32, 32)).estimate
    assert forced is not None and forced.problem is not None and "pixel statistics alone need 92 MB of the 64 MB" in forced.problem
    big = inspect_model(resnet18(num_classes=5), torch.rand(2, 3, 224, 224), max_matrix_mb=256).estimate
    assert big is not None and big.problem is None
    assert big.passes == -(-m // int((256 * 2**20 - 3072 * m * 8) // (m * 8)))  # 256 MB less the pixel statistics
    assert est.coactivation_edges_min >= est.units * 5 and est.coactivation_edges_max == est.units * 5 + (m * (m - 1) // 2 - est.units * 5)


def test_vision_transformer_says_why_influence_does_not_work() -> None:
    from torchvision.models import VisionTransformer

    vit = VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16, num_classes=3)
    rep = inspect_model(vit, torch.rand(2, 3, 32, 32))
    assert rep.methods["influence"] is not None and "multi_head_attention_forward" in rep.methods["influence"]
    assert rep.methods["coactivation"] is None and rep.methods["knockout"] is None and rep.methods["gradient"] is None
    assert [r.kind for r in rep.layers if r.default] == ["tokens"]


def test_cli_inspect_json(tiny_checkpoint: Path) -> None:
    r = CliRunner().invoke(app, ["inspect", "--model", str(tiny_checkpoint), "--images", "1000", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["default_layers"] == ["relu1", "relu2", "relu3", "relu4"]
    assert out["estimate"]["units"] == 4 + 8 + 8 + 16 and out["estimate"]["pixels"] == 784
    assert all(v is None for v in out["methods"].values())
    bad = CliRunner().invoke(app, ["inspect", "--model", str(tiny_checkpoint), "--pixel-grid", "7by7"])
    assert bad.exit_code == 1 and "ROWSxCOLS" in bad.output


def test_cli_inspect_takes_a_stock_torchvision_model_and_refuses_a_bad_spec() -> None:
    r = CliRunner().invoke(app, ["inspect", "--model", "torchvision:resnet18", "--num-classes", "4", "--input-size", "3x64x64",
                                 "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["input_shape"] == [3, 64, 64] and out["classes"] == 4
    assert out["default_layers"][:2] == ["relu", "layer1.0.relu#1"] and out["methods"]["influence"] is None
    bad = CliRunner().invoke(app, ["inspect", "--model", "torchvision:nosuch"])
    lines = [x for x in bad.output.splitlines() if x.strip()]
    assert bad.exit_code == 1 and lines[0].startswith("error:") and "nosuch" in lines[0] and "Traceback" not in bad.output
