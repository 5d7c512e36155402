"""Your model, your data, through the CLI into the real server: a stock torchvision ResNet-18 with
safetensors weights and a ``file.py:factory`` CNN with a state dict and a sidecar, both really
trained on an ImageFolder tree this test writes; then queries, a knockout experiment that reloads
the model from the run (also after the weights file moved), and the refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from deepatlas.cli.app import app
from deepatlas.data.formats import load_data
from deepatlas.db.graph import Graph
from tests.helpers import pixels

pytestmark = pytest.mark.e2e
torch.set_num_threads(2)

CLASSES = ("red", "green", "blue")
FACTORY = '''
import torch.nn as nn

def small_cnn(num_classes=3):
    return nn.Sequential()  # replaced below


class SmallCNN(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(4)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(6 * 8 * 8, 12)
        self.relu2 = nn.ReLU()
        self.fc2 = nn.Linear(12, num_classes)

    def forward(self, x):
        return self.fc2(self.relu2(self.fc1(self.flatten(self.pool1(self.relu1(self.conv1(x)))))))


def small_cnn(num_classes=3):  # noqa: F811
    return SmallCNN(num_classes)
'''


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 noisy 32x32 colour images, 20 per class, each class dominated by one channel."""
    root = tmp_path_factory.mktemp("photos") / "colours"
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(20):
            img = rng.integers(0, 120, (32, 32, 3))
            img[:, :, c] += rng.integers(60, 135)
            Image.fromarray(img.astype(np.uint8)).save(root / name / f"{i:02d}.{'png' if i % 2 else 'jpg'}")
    return root


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> float:
    """Adam on seeded shuffled mini-batches (the folder's order is class by class: unshuffled
    batches of 20 held one class each, and batch norm's running statistics came out of one-class
    batches; the accuracy then swung around the threshold from one torch build to the next)."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    order = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=order)
        for s in range(0, len(x), 20):
            batch = perm[s : s + 20]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _imagenet(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


def test_torchvision_resnet18_with_safetensors(neo4j_server, photos: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = load_data(f"imagefolder:{photos}", "all", input_shape=(3, 32, 32))
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=3)
    acc = _train(net, _imagenet(pixels(data)), data.labels, epochs=6)
    assert acc > 0.6  # really trained: chance is 1/3
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    runner = CliRunner()
    r = runner.invoke(app, ["ingest", "--model", "torchvision:resnet18", "--num-classes", "3",
                            "--weights", str(tmp_path / "w.safetensors"), "--input-size", "32",
                            "--data", f"imagefolder:{photos}", "--split", "all", "--layers", "layer3,layer4",
                            "--edges", "coactivation",
                            "--run", "own-resnet", "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["nodes"]["Neuron"] == 256 + 512 and out["nodes"]["Class"] == 3
    assert out["accuracy"] == pytest.approx(acc, abs=1e-6)  # the same model, the same images, the same normalisation
    r = runner.invoke(app, ["runs", "show", "own-resnet"])
    assert r.exit_code == 0 and "imagefolder:" in r.output, r.output
    with Graph(autostart=False) as g:
        layers = g.read("MATCH (r:Run {name: 'own-resnet'}) MATCH (a:Neuron {run: r.key})-[e:COACTIVATES]->(b:Neuron) "
                        "RETURN DISTINCT a.layer AS layer")
        assert {x["layer"] for x in layers} <= {"layer3", "layer4"} and layers
        row = g.read("MATCH (r:Run {name: 'own-resnet'})-[:OF_MODEL]->(m:Model) "
                     "RETURN m.path AS path, m.source AS source, m.file_sha256 AS fsha, m.arch AS arch, r.dataset AS ds")[0]
    assert row["path"] == str((tmp_path / "w.safetensors").resolve()) and row["arch"] == "torchvision:resnet18"
    assert json.loads(row["source"])["input_shape"] == [0, 32, 32] and len(row["fsha"]) == 64
    assert row["ds"] == f"imagefolder:{photos.resolve()}"
    # every command takes the same model flags: an input score map of one of the user's photos ...
    flags = ["--model", "torchvision:resnet18", "--num-classes", "3", "--weights", str(tmp_path / "w.safetensors"),
             "--input-size", "32", "--class-names", ",".join(CLASSES)]
    r = runner.invoke(app, ["explain", "heatmap", "--image", "4", *flags, "--data", f"imagefolder:{photos}", "--split", "all",
                            "--device", "cpu", "--out", str(tmp_path / "fig"), "--json"])
    assert r.exit_code == 0, r.output
    heat = json.loads(r.stdout)
    assert heat["label"] == CLASSES[int(data.labels[4])] and set(heat["probabilities"]) == set(CLASSES)
    assert Path(heat["figure"]).stat().st_size > 5_000 and len(heat["classes"]) == 3
    # ... and a knockout on the run, its model given as the same full spec (checked against the run's weights)
    r = runner.invoke(app, ["experiment", "knockout", "--class", "green", "--run", "own-resnet", *flags[:6], "--input-size", "32",
                            "--layer", "layer4", "--rank-by", "coactivation", "--ks", "0,4", "--seeds", "1", "--device", "cpu",
                            "--out", str(tmp_path / "fig"), "--no-record", "--json"])
    assert r.exit_code == 0, r.output
    knock = json.loads(r.stdout)
    assert knock["top"]["error"][0] == pytest.approx(1 - acc, abs=1e-6)  # k = 0: the run's own model on its own images
    other = tmp_path / "other.safetensors"
    save_file({k: v * 0.5 if v.is_floating_point() else v for k, v in net.state_dict().items()}, str(other))
    r = runner.invoke(app, ["experiment", "knockout", "--class", "green", "--run", "own-resnet", "--model", "torchvision:resnet18",
                            "--num-classes", "3", "--weights", str(other), "--input-size", "32", "--layer", "layer4",
                            "--rank-by", "coactivation", "--device", "cpu", "--no-record"])
    assert r.exit_code == 1 and "other weights" in r.output


def test_factory_model_run_reloads_after_the_weights_move(neo4j_server, photos: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "net.py").write_text(FACTORY)
    data = load_data(f"imagefolder:{photos}", "all")
    torch.manual_seed(0)
    import importlib.util

    spec = importlib.util.spec_from_file_location("own_net_for_training", tmp_path / "net.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.small_cnn(3)
    acc = _train(net, (pixels(data) - 0.5) / 0.25, data.labels, epochs=30)
    assert acc > 0.8
    weights = tmp_path / "cnn.pt"
    torch.save(net.state_dict(), weights)
    (tmp_path / "cnn.json").write_text(json.dumps({"class_names": list(CLASSES), "mean": 0.5, "std": 0.25}))
    runner = CliRunner()
    r = runner.invoke(app, ["ingest", "--model", f"{tmp_path}/net.py:small_cnn", "--weights", str(weights),
                            "--data", f"imagefolder:{photos}", "--split", "all", "--attribution-per-class", "5",
                            "--between-samples", "20", "--run", "own-cnn", "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["accuracy"] == pytest.approx(acc, abs=1e-6) and out["nodes"]["Neuron"] == 6 + 12
    assert out["edges"].get("INFLUENCES", 0) > 0 and out["edges"].get("GRADIENT", 0) > 0
    r = runner.invoke(app, ["query", "drivers", "--class", "GREEN", "-k", "2", "--run", "own-cnn", "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["class"] == "green" and len(got["drivers"]) == 2  # class names from the sidecar
    r = runner.invoke(app, ["experiment", "knockout", "--class", "green", "--run", "own-cnn", "--layer", "relu2",
                            "--ks", "0,2,4", "--seeds", "2", "--device", "cpu", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    # the weights file moves into $DEEPATLAS_HOME/models under another name: found again by its sha256
    home = Path(os.environ["DEEPATLAS_HOME"])
    (home / "models").mkdir(parents=True, exist_ok=True)
    weights.rename(home / "models" / "renamed.pt")
    r = runner.invoke(app, ["experiment", "knockout", "--class", "green", "--run", "own-cnn", "--layer", "relu2",
                            "--ks", "0,2,4", "--seeds", "2", "--device", "cpu", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout)
    # the same weights and images again: the same predictions before any knockout
    assert again["top"]["k"] == first["top"]["k"] and again["top"]["error"][0] == first["top"]["error"][0]
    assert again["units_ranked"] == first["units_ranked"] > 0
    (home / "models" / "renamed.pt").unlink()
    r = runner.invoke(app, ["experiment", "knockout", "--class", "green", "--run", "own-cnn", "--layer", "relu2",
                            "--ks", "0,2", "--seeds", "1", "--device", "cpu", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "is gone" in r.output


def test_refusals_through_the_cli(neo4j_server, photos: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {marker}",))

    torch.save({"w": Payload()}, tmp_path / "evil.pt")
    runner = CliRunner()
    r = runner.invoke(app, ["ingest", "--model", "torchvision:resnet18", "--num-classes", "3", "--weights",
                            str(tmp_path / "evil.pt"), "--data", f"imagefolder:{photos}", "--split", "all"])
    assert r.exit_code == 1 and "pickled object" in r.output and "--trust-pickle" in r.output
    assert "Traceback" not in r.output and "weights_only" not in r.output and not marker.exists()
    r = runner.invoke(app, ["ingest", "--model", "torchvision:resnet18", "--num-classes", "4", "--input-size", "32",
                            "--data", f"imagefolder:{photos}", "--split", "all", "--device", "cpu"])
    assert r.exit_code == 1 and "--class-names" in r.output and "3 classes" in r.output
    r = runner.invoke(app, ["ingest", "--model", "torchvision:resnet18", "--data", "cifar10:" + str(tmp_path)])
    assert r.exit_code == 1 and "never downloads" in r.output


STOCK = ["vgg11_bn", "mobilenet_v3_small", "densenet121", "efficientnet_b0", "resnet50"]


@pytest.mark.parametrize("arch", STOCK)
def test_stock_architecture_through_the_cli(neo4j_server, photos: Path, tmp_path: Path, arch: str) -> None:  # type: ignore[no-untyped-def]
    """Each stock torchvision classifier as shipped (seeded random weights in a .safetensors
    file, 32x32 photos): inspect, ingest two of its default capture sites, a query, communities,
    a knockout that reloads the run's model from its spec, and an influence heatmap."""
    torch.manual_seed(0)
    net = getattr(torchvision.models, arch)(weights=None, num_classes=3).eval()
    weights = tmp_path / f"{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    flags = ["--model", f"torchvision:{arch}", "--num-classes", "3", "--weights", str(weights), "--input-size", "32",
             "--class-names", ",".join(CLASSES)]
    runner = CliRunner()
    r = runner.invoke(app, ["inspect", *flags, "--images", "60", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert all(reason is None for method, reason in report["methods"].items() if method != "switchgate"), report["methods"]
    rows = {row["name"]: row for row in report["layers"]}
    # the last two default sites of at most 512 units (a small graph, late in the net), not the
    # 1x1 squeeze-excite gates: the multiplication rule gives a gate branch no influence (ARCHITECTURE)
    small = [n for n in report["default_layers"] if (rows[n]["units"] or 0) <= 512
             and not (len(rows[n]["shape"]) == 4 and rows[n]["shape"][2] == rows[n]["shape"][3] == 1)]
    layers = small[-2:]
    run = f"stock-{arch}"
    r = runner.invoke(app, ["ingest", *flags, "--data", f"imagefolder:{photos}", "--split", "all", "--layers", ",".join(layers),
                            "--attribution-per-class", "4", "--between-samples", "8", "--run", run, "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["nodes"]["Class"] == 3 and out["nodes"]["Neuron"] > 0
    assert out["edges"].get("INFLUENCES", 0) > 0 and out["edges"].get("GRADIENT", 0) > 0
    r = runner.invoke(app, ["query", "drivers", "--class", "green", "-k", "2", "--run", run, "--json"])
    assert r.exit_code == 0 and len(json.loads(r.stdout)["drivers"]) <= 2, r.output  # random weights: maybe no |r| >= 0.5
    r = runner.invoke(app, ["query", "run", "class_drivers", "-p", f"run={run}", "-p", "class=green", "-p", "k=2", "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["analyze", "communities", "--run", run, "--graph", "stored", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["communities"], r.output
    r = runner.invoke(app, ["experiment", "knockout", "--class", "green", "--run", run, *flags, "--layer", layers[-1],
                            "--rank-by", "influence", "--ks", "0,2", "--seeds", "1", "--device", "cpu",
                            "--out", str(tmp_path), "--no-record", "--json"])
    assert r.exit_code == 0, r.output
    knock = json.loads(r.stdout)
    # random weights tie the logits (efficientnet_b0's differ by ~1e-14), so the plain model's
    # error is not compared with the ingest's here; test_torchvision_resnet18_with_safetensors
    # does that on a trained model
    assert knock["top"]["k"] == [0, 2] and all(0.0 <= e <= 1.0 for e in knock["top"]["error"])
    r = runner.invoke(app, ["explain", "heatmap", "--image", "0", *flags, "--data", f"imagefolder:{photos}", "--split", "all",
                            "--class", "green", "--device", "cpu", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    assert Path(json.loads(r.stdout)["figure"]).stat().st_size > 5_000


VIT = '''
from torchvision.models import VisionTransformer


def tiny_vit(num_classes=3):
    return VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=24,
                             num_classes=num_classes)
'''


def test_a_vision_transformer_gets_one_gradient_edge_per_feature(neo4j_server, photos: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """torchvision's VisionTransformer (a tiny configuration, seeded random weights). By default
    its encoder block is captured, (B, 5 tokens, 8 features): 8 units, and influence (refused
    for attention) is left out with the reason. Its MLP activation, named, is (B, 5 tokens, 24
    features), captured as 24 units; the GRADIENT edges must go to those 24 features (before:
    one score per token position, 5 of them, written onto units 0-4)."""
    (tmp_path / "vit.py").write_text(VIT)
    import importlib.util

    spec = importlib.util.spec_from_file_location("own_vit", tmp_path / "vit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    net = module.tiny_vit(3)
    nn.init.normal_(net.heads.head.weight, std=0.5)  # torchvision starts the head at zero: every gradient would be 0
    weights = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    flags = ["--model", f"{tmp_path}/vit.py:tiny_vit", "--weights", str(weights), "--input-size", "3x32x32",
             "--class-names", ",".join(CLASSES)]
    runner = CliRunner()
    r = runner.invoke(app, ["inspect", *flags, "--images", "60", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["methods"]["influence"] and report["methods"]["gradient"] is None  # refused, and says why
    r = runner.invoke(app, ["ingest", *flags, "--data", f"imagefolder:{photos}", "--split", "all", "--attribution-per-class",
                            "4", "--run", "vit-blocks", "--device", "cpu", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["nodes"]["Neuron"] == 8 and out["edges"]["GRADIENT"] == 3 * 8, out  # the encoder block's 8 features
    assert "INFLUENCES" not in out["edges"] and any("multi_head_attention" in s for s in out["skipped"]), out
    heat = runner.invoke(app, ["explain", "heatmap", "--image", "0", *flags, "--data", f"imagefolder:{photos}", "--split",
                               "all", "--device", "cpu", "--out", str(tmp_path), "--json"])
    assert heat.exit_code == 0, heat.output
    shown = json.loads(heat.stdout)
    assert shown["method"] == "gradient" and "multi_head_attention" in shown["note"]  # the fallback, and why
    r = runner.invoke(app, ["ingest", *flags, "--data", f"imagefolder:{photos}", "--split", "all", "--edges",
                            "coactivation,gradient", "--attribution-per-class", "4", "--run", "vit", "--device", "cpu",
                            "--layers", "encoder.layers.encoder_layer_0.mlp.1", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["nodes"]["Neuron"] == 24 and out["edges"]["GRADIENT"] == 3 * 24, out
    with Graph(autostart=False) as g:
        rows = g.read("MATCH (r:Run {name: 'vit'}) MATCH (n:Neuron {run: r.key})-[e:GRADIENT]->(c:Class) "
                      "RETURN c.name AS class, count(e) AS edges, collect(n.index) AS units")
    assert sorted(row["class"] for row in rows) == sorted(CLASSES)
    for row in rows:  # every feature of the token layer scored for every class
        assert row["edges"] == 24 and sorted(row["units"]) == list(range(24)), row


MATRIX = ["densenet121", "efficientnet_b0", "convnext_tiny"]


@pytest.mark.parametrize("arch", MATRIX)
def test_every_method_on_a_stock_model_with_default_layers(neo4j_server, photos: Path, tmp_path: Path, arch: str) -> None:  # type: ignore[no-untyped-def]
    """The method matrix through the CLI on a stock model's default capture set (its blocks),
    briefly trained (so that it predicts more than one class), 32x32 photos: ingest, drivers,
    communities, audit, knockout, activate, switch gates, heatmap, feature, perturb, factors,
    disagree. Each must exit 0 with its output."""
    torch.manual_seed(0)
    net = getattr(torchvision.models, arch)(weights=None, num_classes=3)
    images = load_data(f"imagefolder:{photos}", "all", input_shape=(3, 32, 32))
    _train(net, _imagenet(pixels(images)), images.labels, epochs=3)
    for m in net.modules():  # EfficientNet's batch norm moves its running statistics by 1% a step: after 9
        if isinstance(m, nn.BatchNorm2d):  # steps they are still the initial ones; take the data's instead
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.no_grad():
        net(_imagenet(pixels(images)))
    net.eval()
    with torch.no_grad():
        predicted = torch.bincount(net(_imagenet(pixels(images))).argmax(1), minlength=3).tolist()
    weights = tmp_path / f"{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    model = ["--model", f"torchvision:{arch}", "--num-classes", "3", "--weights", str(weights), "--input-size", "32",
             "--class-names", ",".join(CLASSES)]
    data = ["--data", f"imagefolder:{photos}", "--split", "all"]
    run = f"matrix-{arch}"
    runner = CliRunner()

    def ok(*args: str) -> dict:  # type: ignore[type-arg]
        r = runner.invoke(app, [*args, "--json"])
        assert r.exit_code == 0, (args[:2], r.output[-2000:])
        return json.loads(r.stdout)  # type: ignore[no-any-return]

    out = ok("ingest", *model, *data, "--attribution-per-class", "4", "--run", run, "--device", "cpu")
    assert out["nodes"]["Neuron"] > 0 and out["edges"]["COACTIVATES"] > 0 and out["edges"]["GRADIENT"] > 0
    assert out["memory_mb"] and out["pairs"]["tested"] >= out["pairs"]["kept"]
    assert len(ok("query", "drivers", "--class", "green", "-k", "3", "--run", run)["drivers"]) <= 3
    assert ok("analyze", "communities", "--run", run)["communities"]
    r = runner.invoke(app, ["audit", "confusion", "--run", run, "--out", str(tmp_path), "--json"])
    assert r.exit_code in (0, 1) and json.loads(r.stdout)["run"] == run, r.output  # 1: a threshold crossed
    knock = ok("experiment", "knockout", "--class", "green", "--run", run, "--ks", "0,2", "--seeds", "1", "--device", "cpu",
               "--out", str(tmp_path), "--no-record")
    assert knock["top"]["k"] == [0, 2]
    r = runner.invoke(app, ["experiment", "activate", "-k", "1", "-k", "3", "--run", run, "--device", "cpu", "--out",
                            str(tmp_path), "--no-record", "--json"])
    if r.exit_code == 0:
        act = json.loads(r.stdout)
        assert act["layer"] and len(act["classes"]) == 3  # no dense layer: the last captured block is driven
    else:  # a briefly trained model may give every image the same scores: refused, saying so
        assert r.exit_code == 1 and "the same scores" in r.output, r.output
    some = [c for c, n in zip(CLASSES, predicted, strict=True) if 0 < n < 60]  # D'_c needs positives and negatives
    gate_args = ["experiment", "switchgate", "--class", some[0] if some else "green", "--run", run, "--steps", "20",
                 "--per-side", "10", "--seeds", "1", "--device", "cpu", "--out", str(tmp_path), "--no-record"]
    if some:
        assert 0.0 <= ok(*gate_args)["holding_rate"] <= 1.0
    else:  # a model that predicts one class for every image: refused in one line, saying why
        r = runner.invoke(app, gate_args)
        assert (r.exit_code == 1 and "D'_c needs" in r.output) or "for none of" in r.output, r.output
    image = ["--image", "0", *model, *data, "--device", "cpu", "--out", str(tmp_path)]
    assert Path(ok("explain", "heatmap", *image, "--class", "green")["figure"]).exists()
    by_run = ok("explain", "heatmap", "--image", "0", "--run", run, "--device", "cpu", "--out", str(tmp_path))
    assert by_run["label"] in CLASSES  # the run's own model and images, no --model / --data
    assert ok("explain", "feature", *image, "--class", "blue")["figure"]
    assert "flip_step" in json.dumps(ok("explain", "perturb", *image, "--toward", "blue", "--steps", "3"))
    factors = ok("explain", "factors", *model, *data, "--rank", "2", "--images", "30", "--iters", "20", "--device", "cpu",
                 "--out", str(tmp_path))
    assert factors["ranks"][0]["rank"] == 2 and factors["images"] == 30
    assert "class" in ok("explain", "disagree", "--run", run, "--class", "green")
