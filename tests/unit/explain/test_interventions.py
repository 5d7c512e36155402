"""Knockout and activate-only on hand-built networks whose answers are known exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepatlas.data.base import ImageSet
from deepatlas.errors import UsageError
from deepatlas.explain import Intervention, parse_units, unit_statistics
from tests.helpers import pixels


class Tiny(nn.Module):
    """h = relu([x0, x1, x0 + x1]); out0 = h0, out1 = h1 + h2."""

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(2, 3, bias=False)
        self.act = nn.ReLU()
        self.out = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
            self.out.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.fc(self.flatten(x))))


X = torch.tensor([[1.0, 0.2], [0.5, 0.1], [0.1, 0.9], [2.0, 0.05]]).view(4, 1, 1, 2)
Y = torch.tensor([0, 0, 1, 0])


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_knockout_zero_has_the_exact_effect_and_leaves_no_hook() -> None:
    model = Tiny().eval()
    before = model(X)
    iv = Intervention(model)
    assert model(X).argmax(1).tolist() == [1, 1, 1, 1]  # h2 = x0 + x1 makes class 1 win
    assert iv.predict(X, {"act": [2]}).tolist() == [0, 0, 1, 0]  # without h2: x0 vs x1
    assert iv.predict(X, {"act": [0]}).tolist() == [1, 1, 1, 1]  # out0 = 0 < out1
    with iv.knockout({"act": [1, 2]}):
        assert torch.equal(model(X)[:, 1], torch.zeros(4))
    assert _hooks(model) == 0 and torch.equal(model(X), before)


def test_mean_knockout_uses_the_data_set_mean() -> None:
    model = Tiny().eval()
    data = ImageSet.from_tensors(X, Y, ("a", "b"), "toy", "test")
    stats = unit_statistics(model, data, ["act"])
    assert torch.allclose(stats.mean["act"], torch.tensor([0.9, 0.3125, 1.2125]))
    assert torch.allclose(stats.class_mean["act"][1], torch.tensor([0.1, 0.9, 1.0]))
    assert torch.allclose(stats.max["act"], torch.tensor([2.0, 0.9, 2.05]))
    iv = Intervention(model, stats)
    with iv.knockout({"act": [2]}, value="mean"):
        out = model(X)
    assert torch.allclose(out[:, 1], X.view(4, 2)[:, 1] + 1.2125)


def test_activate_only_makes_the_output_input_independent() -> None:
    model = Tiny().eval()
    data = ImageSet.from_tensors(X, Y, ("a", "b"), "toy", "test")
    iv = Intervention(model, unit_statistics(model, data, ["act"]))
    with iv.activate_only({"act": [0]}, value="class-mean", target=0):
        out = model(X)
    # only h0 = class-0 mean of x0 = (1 + 0.5 + 2) / 3
    assert torch.allclose(out, torch.tensor([[3.5 / 3, 0.0]]).expand(4, 2))
    assert iv.predict(X, {"act": [1]}, mode="activate", value="max").tolist() == [1, 1, 1, 1]
    assert _hooks(model) == 0


def test_conv_filters_are_knocked_out_whole() -> None:
    conv = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2, bias=False))
    with torch.no_grad():
        conv[0].weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1))
        conv[3].weight.copy_(torch.cat([torch.ones(1, 8), torch.cat([torch.zeros(1, 4), torch.ones(1, 4)], 1)]))
    x = torch.rand(3, 1, 2, 2) + 0.1
    iv = Intervention(conv)
    with iv.knockout({"1": [1]}):
        out = conv(x)
    assert torch.allclose(out[:, 1], torch.zeros(3)) and torch.allclose(out[:, 0], x.flatten(1).sum(1))


def test_bad_selections() -> None:
    iv = Intervention(Tiny())
    with pytest.raises(UsageError, match="empty"):
        iv.predict(X, {})
    with pytest.raises(UsageError, match="unknown layer"):
        iv.predict(X, {"nope": [1]})
    with pytest.raises(UsageError, match=r"units 0\.\.2"):
        iv.predict(X, {"act": [5]})
    with pytest.raises(UsageError, match="twice"):
        iv.predict(X, {"act": [1, 1]})
    with pytest.raises(UsageError, match="needs unit statistics"):
        iv.predict(X, {"act": [1]}, value="mean")
    assert parse_units("relu4:3, relu4:7,block.1.relu:0") == {"relu4": [3, 7], "block.1.relu": [0]}
    with pytest.raises(UsageError, match="layer:index"):
        parse_units("relu4-3")


def test_knockout_on_one_call_of_a_shared_module_in_a_stock_resnet() -> None:
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(num_classes=3).eval()
    x = torch.rand(2, 3, 32, 32)
    seen: dict[str, torch.Tensor] = {}
    iv = Intervention(model)
    from deepatlas.explain._hooks import capture_outputs

    every = list(range(64))
    with iv.knockout({"layer1.0.relu#2": every}), capture_outputs(model, ["layer1.0.relu#1", "layer1.0.relu#2"]) as got:
        with torch.no_grad():
            model(x)
        seen.update(got)
    assert (seen["layer1.0.relu#2"] == 0).all()
    assert (seen["layer1.0.relu#1"] != 0).float().mean() > 0.2  # the first call of the same module is untouched
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_token_layer_units_are_features() -> None:
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=12,
                            num_classes=3).eval()
    layer = "encoder.layers.encoder_layer_0.mlp.1"
    data = ImageSet.from_tensors(torch.rand(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2]), ("a", "b", "c"), "t", "test")
    stats = unit_statistics(vit, data, [layer], kinds={layer: "tokens"})
    assert stats.mean[layer].shape == (12, 5) and stats.max[layer].shape == (12,)
    iv = Intervention(vit, stats, kinds={layer: "tokens"})
    from deepatlas.explain._hooks import capture_outputs

    with iv.knockout({layer: [3]}), capture_outputs(vit, [layer]) as got, torch.no_grad():
        vit(pixels(data))
    out = got[layer]  # (B, tokens, features)
    assert (out[..., 3] == 0).all() and (out[..., 2] != 0).any()


def test_pg_ranking_across_conv_layers_equals_hand_sorted_norms() -> None:
    """Two conv layers of a seeded float64 CNN: the ranking is every filter of both layers sorted
    by the L2 norm of d p_c / d A averaged over the images, computed here image by image."""
    from deepatlas.explain.experiments import pg_ranking

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)).double().eval()
    x = torch.rand(7, 1, 6, 6, dtype=torch.float64)
    c = 2
    sums = {"1": torch.zeros(3, 6, 6, dtype=torch.float64), "3": torch.zeros(4, 6, 6, dtype=torch.float64)}
    for i in range(len(x)):  # by hand: one image at a time, split the model at the two layers
        a1 = m[1](m[0](x[i : i + 1])).requires_grad_(True)
        a3 = m[3](m[2](a1))
        a3.retain_grad()
        p = m[6](m[5](m[4](a3))).softmax(1)[0, c]
        g1, g3 = torch.autograd.grad(p, [a1, a3])
        sums["1"] += g1[0]
        sums["3"] += g3[0]
    hand = [(name, u, float((sums[name][u] / len(x)).norm())) for name in ("1", "3") for u in range(len(sums[name]))]
    hand.sort(key=lambda t: -t[2])
    got = pg_ranking(m, x, c, ["1", "3"], batch_size=3)
    assert [(lay, u) for lay, u, _ in got] == [(lay, u) for lay, u, _ in hand]
    assert [s for _, _, s in got] == pytest.approx([s for _, _, s in hand], rel=1e-12)
    logit = pg_ranking(m, x, c, ["1", "3"], output="logit")
    assert [s for _, _, s in logit] != pytest.approx([s for _, _, s in got])  # y = logit is another ranking score
