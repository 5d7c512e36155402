"""Influential scores and prediction gradients against hand computations and dense oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian

from deepatlas.errors import UsageError
from deepatlas.explain.gradients import PredictionGradients
from deepatlas.explain.influence import InfluentialScores
from deepatlas.models.layers import Add
from deepatlas.models.resnet import ResNet18


def _j(matrix: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Dense J[l, l+1] from the layer's (out, in) matrix and the lower values: w_ij L_i / sum_i |w_ij L_i|."""
    a = matrix.T * lower[:, None]
    d = np.abs(a).sum(0)
    return np.where(d > 0, a / np.where(d > 0, d, 1), 0.0)


def test_two_layer_network_by_hand() -> None:
    # x = (1, 2); hidden h = relu(W1 x), W1 = [[1, -1], [2, 1]]; out = W2 h, W2 = [[1, 3]]
    m = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False)).double()
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 1.0]]))
        m[2].weight.copy_(torch.tensor([[1.0, 3.0]]))
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    # h = relu(-1, 4) = (0, 4). J[h->out] = (1*0, 3*4) / (0 + 12) = (0, 1)
    # J[x->h] column h0: (1*1, -1*2)/3 = (1/3, -2/3); column h1: (2*1, 1*2)/4 = (1/2, 1/2)
    # score(x) = J[x->h] @ (0, 1) = (1/2, 1/2)
    s = InfluentialScores(m).attribute(x, target=0)
    assert torch.allclose(s, torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    h = InfluentialScores(m).attribute(x, target=0, layer="1")
    assert torch.allclose(h, torch.tensor([[0.0, 1.0]], dtype=torch.float64))


def test_dead_relu_zero_gradient_but_credited_by_influence() -> None:
    # The output node is a ReLU unit killed by its bias (z = x0 + 3 x1 - 10 < 0): its gradient
    # to x is 0, but the influential score ignores biases and activations and credits x by
    # w_i x_i / sum |w_i x_i| = (1, 3) / 4.
    m = nn.Sequential(nn.Linear(2, 1), nn.ReLU()).double()
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, 3.0]]))
        m[0].bias.fill_(-10.0)
    x = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    assert torch.equal(PredictionGradients(m).attribute(x, target=0), torch.zeros(1, 2, dtype=torch.float64))
    s = InfluentialScores(m).attribute(x, target=0)
    assert torch.allclose(s, torch.tensor([[0.25, 0.75]], dtype=torch.float64))


def test_chain_rule_layer_by_layer_equals_one_sweep_mlp() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)).double().eval()
    x = torch.rand(3, 5, dtype=torch.float64)
    s = InfluentialScores(m).attribute(x, target=torch.tensor([0, 1, 2]))
    for b in range(3):
        l0 = x[b]
        l1 = m[1](m[0](l0))
        l2 = m[3](m[2](l1))
        chain = _j(m[0].weight.detach().numpy(), l0.numpy()) @ _j(m[2].weight.detach().numpy(), l1.detach().numpy()) \
            @ _j(m[4].weight.detach().numpy(), l2.detach().numpy())
        assert np.abs(chain[:, b] - s[b].numpy()).max() < 1e-12


def test_conv_pool_chain_against_dense_jacobians() -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(1, 2, 2, bias=True)
    m = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)).double().eval()
    x = torch.rand(1, 1, 5, 5, dtype=torch.float64)
    s = InfluentialScores(m).attribute(x, target=2)[0, 0].numpy().ravel()
    # oracle: conv as a dense matrix (the bias-free conv's Jacobian), pooling as its routing matrix
    def conv_nb(t: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(t.view(1, 1, 5, 5), conv.weight.double()).flatten()
    c_mat = jacobian(conv_nb, x.flatten()).numpy()  # (32, 25)
    a1 = m[1](m[0](x))
    p_mat = jacobian(lambda t: nn.functional.max_pool2d(t.view(1, 2, 4, 4), 2).flatten(), a1.flatten().detach()).numpy()
    pooled = m[2](a1).flatten().detach().numpy()
    j1 = _j(c_mat, x.flatten().numpy())  # (25, 32)
    j_out = _j(m[4].weight.detach().numpy(), pooled)  # (8, 3)
    want = j1 @ p_mat.T @ j_out[:, 2]
    assert np.abs(want - s).max() < 1e-12


def test_between_layers_sums_positions() -> None:
    torch.manual_seed(2)
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 2)).double().eval()
    x = torch.rand(2, 3, dtype=torch.float64)
    inf = InfluentialScores(m)
    j = inf.between(x, "1", "3")  # (B, 4, 2)
    for b in range(2):
        l1 = m[1](m[0](x[b])).detach().numpy()
        want = _j(m[2].weight.detach().numpy(), l1)
        assert np.abs(j[b].numpy() - want).max() < 1e-12


def test_batchnorm_and_unsupported_modules() -> None:
    bn = nn.BatchNorm1d(2).double().eval()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([-2.0, 0.5]))
    m = nn.Sequential(nn.Linear(2, 2, bias=False), bn, nn.ReLU(), nn.Linear(2, 1, bias=False)).double().eval()
    x = torch.rand(2, 2, dtype=torch.float64) + 0.1
    folded = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False)).double()
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        folded[0].weight.copy_(m[0].weight * scale[:, None])
        folded[2].weight.copy_(m[3].weight)
    # BN folded into the linear layer gives the same scores (the hidden values are those of m)
    got = InfluentialScores(m).attribute(x, target=0, layer="0")
    h = m[2](m[1](m[0](x)))
    want = torch.tensor(np.stack([_j(m[3].weight.detach().numpy(), h[b].detach().numpy())[:, 0] for b in range(2)]))
    assert torch.allclose(got * torch.sign(scale), want)
    with pytest.raises(UsageError, match="not an output node"):
        InfluentialScores(folded).attribute(x, target=5)


class _ResidualMLP(nn.Module):
    """h = relu(W1 x); y = relu(Add(W2 h, h)); out = W3 y: one residual sum over dense layers."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.relu1 = nn.Linear(4, 5), nn.ReLU()
        self.fc2, self.add, self.relu2 = nn.Linear(5, 5), Add(), nn.ReLU()
        self.fc3 = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu1(self.fc1(x))
        return self.fc3(self.relu2(self.add(self.fc2(h), h)))


def test_residual_addition_is_a_linear_map_with_unit_weights() -> None:
    # The addition node y = z + h (z = W2 h) gets J[z, y]_kk = z_k / (|z_k| + |h_k|) and the skip
    # J[h, y]_kk = h_k / (|z_k| + |h_k|); so J[h, y] = J[h, z] @ diag(z share) + diag(h share).
    torch.manual_seed(3)
    m = _ResidualMLP().double().eval()
    x = torch.rand(4, 4, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 1])
    s = InfluentialScores(m).attribute(x, target=target)
    w = {n: getattr(m, n).weight.detach().numpy() for n in ("fc1", "fc2", "fc3")}
    for b in range(4):
        h = m.relu1(m.fc1(x[b])).detach().numpy()
        z = m.fc2(torch.from_numpy(h)).detach().numpy()
        y = np.maximum(z + h, 0)
        d = np.abs(z) + np.abs(h)
        j_hy = _j(w["fc2"], h) @ np.diag(z / d) + np.diag(h / d)
        chain = _j(w["fc1"], x[b].numpy()) @ j_hy @ _j(w["fc3"], y)
        assert np.abs(chain[:, int(target[b])] - s[b].numpy()).max() < 1e-12


def test_resnet18_scores_are_finite_and_respect_the_addition_rule() -> None:
    torch.manual_seed(0)
    m = ResNet18().eval()
    x = torch.rand(2, 1, 28, 28)
    out = InfluentialScores(m).attribute_layers(x, 3, [None, "layer4.1.relu#2", "layer1.0.relu#1"])
    assert [tuple(t.shape) for t in out] == [(2, 1, 28, 28), (2, 512, 2, 2), (2, 64, 14, 14)]
    assert all(torch.isfinite(t).all() for t in out)
    # the last block's output feeds avgpool + fc only: its scores are the fc rule's exactly
    y = out[1].sum((2, 3))
    with torch.no_grad():
        feats = m.avgpool(m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x)))))))))
    want = torch.from_numpy(np.stack([_j(m.fc.weight.detach().double().numpy(), f.double().numpy())[:, 3]
                                      for f in feats.flatten(1)]))
    assert torch.allclose(y.double(), want, atol=1e-5)


class _FunctionalResidualMLP(nn.Module):
    """The residual MLP above with its sum written as ``+`` and one ReLU module called twice."""

    def __init__(self, twin: nn.Module) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = twin.fc1, twin.fc2, twin.fc3
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.fc1(x))
        out = self.fc2(h)
        out += h
        return self.fc3(self.relu(out))


def test_functional_addition_gets_the_paper_rule_like_the_add_module() -> None:
    torch.manual_seed(3)
    m = _ResidualMLP().double().eval()
    f = _FunctionalResidualMLP(m).double().eval()
    x = torch.rand(4, 4, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 1])
    assert torch.equal(m(x), f(x))
    assert torch.allclose(InfluentialScores(f).attribute(x, target=target), InfluentialScores(m).attribute(x, target=target),
                          atol=1e-14, rtol=0)
    # autograd's rule (each branch the whole signal) would differ: the test can tell them apart
    assert not torch.allclose(PredictionGradients(f).attribute(x, target=0), InfluentialScores(f).attribute(x, target=0))


class _AddBlock(nn.Module):
    """A torchvision BasicBlock around the same modules, with unshared ReLUs and an Add module:
    how deepatlas had to rebuild ResNets before the rules saw functional sums (the oracle here)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu1 = block.conv1, block.bn1, nn.ReLU()
        self.conv2, self.bn2, self.downsample = block.conv2, block.bn2, block.downsample
        self.add, self.relu2 = Add(), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(self.add(out, x if self.downsample is None else self.downsample(x)))


def test_stock_torchvision_resnet18_equals_the_add_module_rebuild() -> None:
    import copy

    torch.manual_seed(0)
    stock = ResNet18(in_channels=1, n_classes=10).eval()  # torchvision's blocks: shared ReLU, `out += identity`
    rebuilt = copy.deepcopy(stock)
    for stage in (rebuilt.layer1, rebuilt.layer2, rebuilt.layer3, rebuilt.layer4):
        for i, block in enumerate(stage):
            stage[i] = _AddBlock(block)
    rebuilt.relu = nn.ReLU()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(stock(x), rebuilt(x), atol=1e-5)
    a = InfluentialScores(stock).attribute(x, target=torch.tensor([3, 7]))
    b = InfluentialScores(rebuilt).attribute(x, target=torch.tensor([3, 7]))
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max()))
    layer = InfluentialScores(stock).attribute(x, target=3, layer="layer2.1.relu#1")
    assert torch.allclose(layer, InfluentialScores(rebuilt).attribute(x, target=3, layer="layer2.1.relu1"), atol=1e-6)


def test_layer_norm_folds_like_batch_norm() -> None:
    ln = nn.LayerNorm(3).double()
    with torch.no_grad():
        ln.weight.copy_(torch.tensor([-1.5, 2.0, 0.5]))
    m = nn.Sequential(nn.Linear(2, 3, bias=False), ln, nn.ReLU(), nn.Linear(3, 1, bias=False)).double().eval()
    x = torch.rand(2, 2, dtype=torch.float64) + 0.1
    got = InfluentialScores(m).attribute(x, target=0, layer="0")
    h = m[2](m[1](m[0](x)))
    want = torch.tensor(np.stack([_j(m[3].weight.detach().numpy(), h[b].detach().numpy())[:, 0] for b in range(2)]))
    assert torch.allclose(got * torch.sign(ln.weight.detach()), want)


def test_operations_without_a_rule_are_named() -> None:
    from torchvision.models import VisionTransformer

    vit = VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16,
                            num_classes=3).eval()
    with pytest.raises(UsageError, match=r"multi_head_attention_forward.*encoder\.layers\.encoder_layer_0\.self_attention"):
        InfluentialScores(vit).attribute(torch.rand(1, 3, 32, 32), target=0)

    class Square(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.fc(x)
            return h * h

    with pytest.raises(UsageError, match="same shape"):
        InfluentialScores(Square()).attribute(torch.rand(1, 2), target=0)
    emb = nn.Sequential(nn.Flatten(), nn.PReLU(), nn.Linear(4, 2))
    with pytest.raises(UsageError, match="prelu with a parameter in module '1'"):
        InfluentialScores(emb).attribute(torch.rand(1, 4), target=0)


@pytest.mark.parametrize("name", ["resnet50", "vgg11_bn", "mobilenet_v3_small", "densenet121", "efficientnet_b0",
                                  "convnext_tiny"])
def test_stock_torchvision_architectures_as_shipped(name: str) -> None:
    from torchvision.models import get_model

    torch.manual_seed(0)
    m = get_model(name, weights=None, num_classes=3).eval()
    x = torch.rand(1, 3, 32, 32)
    s = InfluentialScores(m).attribute(x, target=1)
    assert s.shape == x.shape and torch.isfinite(s).all() and s.abs().sum() > 0
    for p in m.parameters():  # nothing left behind: no hooks, no modes, the model unchanged
        assert p.grad is None
    assert not any(mod._forward_hooks or mod._forward_pre_hooks for mod in m.modules())


def _one_unit_sweeps(inf: InfluentialScores, x: torch.Tensor, lower: str, upper: str) -> torch.Tensor:
    """The definition of ``between``: one backward sweep per upper unit, seeded with ones on it."""
    from deepatlas.explain._hooks import capture_outputs

    with torch.enable_grad(), inf._rules():
        with capture_outputs(inf.model, [lower, upper]) as captured:
            inf.model(x.clone().requires_grad_(True))
        low, up = captured[lower], captured[upper]
        out = torch.zeros(low.shape[0], low.shape[1], up.shape[1], dtype=low.dtype)
        for j in range(up.shape[1]):
            seed = torch.zeros_like(up)
            seed[:, j] = 1.0
            (g,) = torch.autograd.grad(up, low, grad_outputs=seed, retain_graph=True, allow_unused=True)
            if g is not None:
                out[:, :, j] = g.flatten(2).sum(2) if g.ndim > 2 else g
    return out


@pytest.mark.parametrize("arch", ["cnn", "resnet"])
def test_between_batched_equals_one_unit_sweeps(arch: str) -> None:
    from deepatlas.explain._hooks import capture_outputs
    from deepatlas.explain.influence import _single_weighted_layer
    from deepatlas.models.reference import FashionCNN

    torch.manual_seed(5)
    if arch == "cnn":
        m: nn.Module = FashionCNN(widths=(4, 6, 5), hidden=7).double().eval()
        pairs = [("relu1", "relu2"), ("relu2", "relu3"), ("relu3", "relu4")]
        slow = [("relu1", "relu3")]  # two convs apart: the generic batched path
    else:
        m = ResNet18().double().eval()
        # within a block (through the Add), across blocks, a stride-2 downsampling block
        pairs = [("relu", "layer1.0.relu#1"), ("layer1.0.relu#1", "layer1.0.relu#2"), ("layer1.1.relu#2", "layer2.0.relu#1"),
                 ("layer2.0.relu#1", "layer2.0.relu#2")]
        slow = [("relu", "layer1.0.relu#2")]  # the skip and two convs: the generic batched path
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    inf = InfluentialScores(m)
    for lower, upper in pairs + slow:
        with torch.enable_grad(), inf._rules():
            with capture_outputs(m, [lower, upper]) as c:
                m(x.clone().requires_grad_(True))
            assert (_single_weighted_layer(c[upper], c[lower]) is not None) == ((lower, upper) in pairs)
        done: list[int] = []
        got = inf.between(x, lower, upper, progress=done.append, chunk_mb=0.5)  # small chunks: several calls
        want = _one_unit_sweeps(inf, x, lower, upper)
        assert sum(done) == want.shape[2]
        assert got.shape == want.shape and want.abs().max() > 0
        assert (got - want).abs().max() < 1e-12 * max(1.0, float(want.abs().max()))
