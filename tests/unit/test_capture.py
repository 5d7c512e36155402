from __future__ import annotations

import pytest
import torch
from torch import nn

from deepatlas.errors import IngestError
from deepatlas.ingest.capture import ActivationRecorder, default_layers
from deepatlas.models import MLP, FashionCNN


def _hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_default_layers_of_reference_cnn_are_post_activation() -> None:
    model = FashionCNN(1, 10, (2, 3, 4), 5, 28).eval()
    assert default_layers(model, torch.rand(1, 1, 28, 28)) == ["relu1", "relu2", "relu3", "relu4"]


def test_conv_units_are_spatial_means_and_hooks_are_removed() -> None:
    torch.manual_seed(0)
    model = FashionCNN(1, 10, (2, 3, 4), 5, 28).eval()
    x = torch.rand(6, 1, 28, 28)
    rec = ActivationRecorder(model, example=x[:1])
    assert [s.kind for s in rec.layers] == ["conv", "conv", "conv", "dense"]
    assert rec.n_units == 2 + 3 + 4 + 5
    acts, out = rec.record(x)
    with torch.no_grad():
        relu1 = torch.relu(model.conv1(x))
        want = relu1.mean(dim=(2, 3))
        logits = model(x)
    assert torch.allclose(acts[:, :2], want, atol=1e-6)
    assert torch.allclose(out, logits)
    assert _hooks_left(model) == 0


def test_works_on_any_module_given_names() -> None:
    seq = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 3))
    rec = ActivationRecorder(seq, ["2"], example=torch.rand(2, 1, 8, 8))
    acts, out = rec.record(torch.rand(4, 1, 8, 8))
    assert acts.shape == (4, 8) and out.shape == (4, 3)
    assert default_layers(MLP(64, (8, 6), 3), torch.rand(1, 64)) == ["relu1", "relu2"]


def test_functional_activation_falls_back_to_the_layer() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 3)
            self.b = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.relu(self.a(x)))

    assert default_layers(Functional(), torch.rand(1, 4)) == ["a"]


def test_bad_layer_names() -> None:
    model = FashionCNN(1, 10, (2, 3, 4), 5, 28)
    ex = torch.rand(1, 1, 28, 28)
    with pytest.raises(IngestError, match=r"unknown layer 'conv9'.*conv1"):
        ActivationRecorder(model, ["conv9"], example=ex)
    with pytest.raises(IngestError, match="named twice: relu1"):
        ActivationRecorder(model, ["relu1", "relu1"], example=ex)


def test_shared_module_is_refused() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.act = nn.ReLU()
            self.out = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.act(self.fc(self.act(x))))

    with pytest.raises(IngestError, match="runs 2 times"):
        ActivationRecorder(Shared(), ["act"], example=torch.rand(1, 4))


def test_layers_are_sorted_by_execution_order() -> None:
    model = FashionCNN(1, 10, (2, 3, 4), 5, 28)
    rec = ActivationRecorder(model, ["relu4", "conv1"], example=torch.rand(1, 1, 28, 28))
    assert [s.name for s in rec.layers] == ["conv1", "relu4"] and [s.position for s in rec.layers] == [1, 2]
