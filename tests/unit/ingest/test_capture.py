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

    model = Shared().eval()
    with pytest.raises(IngestError, match=r"runs 2 times per forward pass.*name one call: act#1, act#2"):
        ActivationRecorder(model, ["act"], example=torch.rand(1, 4))
    # each call is its own layer: act#1 sees relu(x), act#2 relu(fc(relu(x)))
    rec = ActivationRecorder(model, ["act#2", "act#1"], example=torch.rand(1, 4))
    assert [s.name for s in rec.layers] == ["act#1", "act#2"]
    x = torch.randn(5, 4)
    acts, _ = rec.record(x)
    with torch.no_grad():
        assert torch.equal(acts[:, :4], torch.relu(x))
        assert torch.equal(acts[:, 4:], torch.relu(model.fc(torch.relu(x))))
    assert _hooks_left(model) == 0 and not any(m._forward_pre_hooks for m in model.modules())


def test_stock_resnet_default_layers_are_its_blocks_and_the_stem() -> None:
    from torchvision.models import resnet18

    model = resnet18(num_classes=3).eval()
    names = default_layers(model, torch.rand(1, 3, 32, 32))
    blocks = [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]
    assert names == ["relu", *blocks]  # the stem's post-activation, then each BasicBlock's output
    rec = ActivationRecorder(model, example=torch.rand(1, 3, 32, 32))
    assert rec.n_units == 64 + 2 * 64 + 2 * 128 + 2 * 256 + 2 * 512
    # a block's units are its output after the residual sum and the final ReLU
    x = torch.rand(2, 3, 32, 32)
    seen = {}
    h = model.layer2[1].register_forward_hook(lambda m, i, o: seen.setdefault("o", o))
    acts, _ = rec.record(x)
    h.remove()
    start = 64 + 2 * 64 + 128
    assert torch.allclose(acts[:, start : start + 128], seen["o"].mean((2, 3)))
    # the calls inside a block stay available by name
    inner = ActivationRecorder(model, ["layer1.0.relu#1", "layer1.0.relu#2"], example=x)
    assert inner.n_units == 128


def test_token_layers_have_one_unit_per_feature() -> None:
    from torchvision.models import VisionTransformer

    vit = VisionTransformer(image_size=32, patch_size=16, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=24,
                            num_classes=3).eval()
    names = default_layers(vit, torch.rand(1, 3, 32, 32))
    assert names == ["encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"]  # the encoder blocks
    rec = ActivationRecorder(vit, example=torch.rand(1, 3, 32, 32))
    assert [(s.kind, s.size) for s in rec.layers] == [("tokens", 8), ("tokens", 8)]
    mlp = ActivationRecorder(vit, ["encoder.layers.encoder_layer_0.mlp.1"], example=torch.rand(1, 3, 32, 32))
    assert [(s.kind, s.size) for s in mlp.layers] == [("tokens", 24)]  # inside a block, by name
    x = torch.rand(3, 3, 32, 32)
    acts, _ = mlp.record(x)
    seen = {}
    h = vit.encoder.layers.encoder_layer_0.mlp[1].register_forward_hook(lambda m, i, o: seen.setdefault("o", o))
    with torch.no_grad():
        vit(x)
    h.remove()
    assert torch.allclose(acts[:, :24], seen["o"].mean(1))  # 5 tokens (4 patches + class) averaged


def test_layers_are_sorted_by_execution_order() -> None:
    model = FashionCNN(1, 10, (2, 3, 4), 5, 28)
    rec = ActivationRecorder(model, ["relu4", "conv1"], example=torch.rand(1, 1, 28, 28))
    assert [s.name for s in rec.layers] == ["conv1", "relu4"] and [s.position for s in rec.layers] == [1, 2]


def test_out_of_memory_splits_the_batch_until_it_fits() -> None:
    class Picky(nn.Module):
        """Raises the device's out-of-memory error for batches over 3, like a small GPU."""

        def __init__(self) -> None:
            super().__init__()
            self.fc, self.act, self.out = nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)
            self.sizes: list[int] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.sizes.append(len(x))
            if len(x) > 3:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return self.out(self.act(self.fc(x)))

    model = Picky().eval()
    rec = ActivationRecorder(model, example=torch.rand(2, 4))
    x = torch.randn(10, 4)
    acts, out = rec.record(x)
    with torch.no_grad():
        assert torch.allclose(acts, torch.relu(model.fc(x))) and torch.allclose(out, model.out(torch.relu(model.fc(x))))
    assert rec.max_batch == 2 and max(model.sizes[-5:]) <= 2
    model.sizes.clear()
    rec.record(torch.randn(7, 4))
    assert model.sizes == [2, 2, 2, 1]  # the size that worked is kept for later batches
    tiny = ActivationRecorder(model, example=torch.rand(2, 4))

    def never(x: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    model.forward = never  # type: ignore[method-assign]
    with pytest.raises(IngestError, match="even for one image"):
        tiny.record(torch.randn(4, 4))


def test_autocast_records_in_reduced_precision_close_to_float32() -> None:
    torch.manual_seed(0)
    model = FashionCNN(1, 10, (4, 8, 8), 16, 28).eval()
    x = torch.rand(16, 1, 28, 28)
    exact, _ = ActivationRecorder(model, example=x[:1]).record(x)
    amp, out = ActivationRecorder(model, example=x[:1], autocast=True).record(x)
    assert amp.dtype == torch.float32 and out.dtype == torch.float32
    assert not torch.equal(amp, exact)  # it really ran in bfloat16
    assert torch.allclose(amp, exact, rtol=0.05, atol=0.02)


def test_channels_last_maps_are_not_read_as_conv_maps() -> None:
    """ConvNeXt's block MLP runs on (B, H, W, C): reading it as (B, C, H, W) made its rows the
    units (16 "units" for 384 features at 64x64). It is refused by name and left out of the
    default set; the blocks themselves (channels-first) are the default."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.convnext_tiny(num_classes=3).eval()
    x = torch.rand(2, 3, 32, 32)
    defaults = default_layers(net, x)
    assert defaults == [f"features.{s}.{b}" for s, n in ((1, 3), (3, 3), (5, 9), (7, 3)) for b in range(n)]
    with pytest.raises(IngestError, match="channels-last"):
        ActivationRecorder(net, ["features.1.0.block.4"], example=x)
    rec = ActivationRecorder(net, ["features.1.0", "features.3.1"], example=x)
    assert [(s.kind, s.size) for s in rec.layers] == [("conv", 96), ("conv", 192)]
    acts, out = rec.record(x)
    assert acts.shape == (2, 96 + 192) and out.shape == (2, 3)
