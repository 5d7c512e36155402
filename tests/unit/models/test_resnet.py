"""The ResNet-18 adaptation: torchvision's network and weights with a small-image stem."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18

from deepatlas.ingest.capture import ActivationRecorder, default_layers
from deepatlas.models import build_model, load_checkpoint, save_checkpoint
from deepatlas.models.resnet import ResNet18


def test_same_weights_same_outputs_as_torchvision() -> None:
    torch.manual_seed(0)
    ours = ResNet18(in_channels=1, n_classes=10).eval()
    theirs = resnet18(weights=None, num_classes=10)
    theirs.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    theirs.load_state_dict(ours.state_dict())  # same keys and shapes
    theirs.eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_default_layers_are_the_stem_and_the_blocks() -> None:
    m = ResNet18().eval()
    x = torch.rand(2, 1, 28, 28)
    blocks = [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]
    assert default_layers(m, x) == ["relu", *blocks]
    rec = ActivationRecorder(m, example=x)
    assert rec.n_units == 64 + 2 * 64 + 2 * 128 + 2 * 256 + 2 * 512 == 1984
    acts, out = rec.record(x)
    assert acts.shape == (2, 1984) and out.shape == (2, 10)
    assert (acts >= 0).all()  # each block ends in a ReLU; spatially averaged
    every_call = ["relu"] + [f"{blk}.relu#{k}" for blk in blocks for k in (1, 2)]
    assert ActivationRecorder(m, every_call, example=x).n_units == 3904  # every activation call, when named


def test_checkpoint_round_trip(tmp_path) -> None:
    torch.manual_seed(1)
    m = build_model("resnet18", {"in_channels": 1, "n_classes": 10}).eval()
    path = save_checkpoint(tmp_path / "r.pt", m, "resnet18", {"in_channels": 1, "n_classes": 10},
                           {"class_names": [str(i) for i in range(10)], "input_shape": [1, 28, 28]})
    back = load_checkpoint(path)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(back.model(x), m(x))
