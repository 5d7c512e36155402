"""Linear CKA and unit matching against independent implementations on small data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deepatlas.graphops.cka import MinibatchCKA, cka_from_covariance, match_units
from deepatlas.ingest.stats import CoMoments


def _numpy_unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    """Song et al. (2012), eq. 5, written out independently."""
    n = k.shape[0]
    k, l = k.copy(), l.copy()  # noqa: E741
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    one = np.ones(n)
    return float((np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
                  - 2 / (n - 2) * (one @ k @ l @ one)) / (n * (n - 3)))


def test_channel_mean_cka_from_streamed_covariance_equals_the_full_data_formula() -> None:
    g = np.random.default_rng(0)
    x = g.normal(size=(300, 6))
    y = x[:, :4] @ g.normal(size=(4, 5)) + 0.5 * g.normal(size=(300, 5))
    acc = CoMoments(11)
    for s in range(0, 300, 37):  # uneven batches
        acc.update(torch.from_numpy(np.hstack([x, y])[s : s + 37]))
    xc, yc = x - x.mean(0), y - y.mean(0)
    want = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert cka_from_covariance(acc.cxy, slice(0, 6), slice(6, 11)) == pytest.approx(want, abs=1e-12)
    assert cka_from_covariance(acc.cxy, slice(0, 6), slice(0, 6)) == pytest.approx(1.0)


def test_minibatch_cka_equals_numpy_and_the_torch_cka_package() -> None:
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(16, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(5)]
    w = torch.randn(48, 7, generator=g, dtype=torch.float64)
    ys = [torch.tanh(b.flatten(1) @ w) for b in batches]
    acc = MinibatchCKA(1, 1)
    for b, y in zip(batches, ys, strict=True):
        acc.update([b], [y])
    xy = xx = yy = 0.0
    for b, y in zip(batches, ys, strict=True):
        k = b.flatten(1).numpy() @ b.flatten(1).numpy().T
        l = y.numpy() @ y.numpy().T  # noqa: E741
        xy += _numpy_unbiased_hsic(k, l)
        xx += _numpy_unbiased_hsic(k, k)
        yy += _numpy_unbiased_hsic(l, l)
    assert float(acc.compute()[0, 0]) == pytest.approx(xy / np.sqrt(xx * yy), abs=1e-9)

    torch_cka = pytest.importorskip("torch_cka")  # the published package (Subramanian), same estimator

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Identity()
            self.b = nn.Flatten()
            self.c = nn.Linear(48, 7, bias=False)  # torch_cka works in float32
            with torch.no_grad():
                self.c.weight.copy_(w.T)
            self.d = nn.Tanh()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.d(self.c(self.b(self.a(x))))

    net = Two()
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(torch.cat(batches).float(), torch.zeros(80)), batch_size=16)  # the same 5 batches
    cka = torch_cka.CKA(net, net, model1_layers=["a", "d"], model2_layers=["a", "d"], device="cpu")
    cka.compare(loader, loader)
    theirs = cka.export()["CKA"]
    ours = MinibatchCKA(2, 2)
    for b in batches:
        y = net(b.float()).double()  # the same float32 activations the package sees
        ours.update([b.float(), y], [b.float(), y])
    assert torch.allclose(ours.compute().float(), theirs.float(), atol=1e-6), (ours.compute(), theirs)


def test_matching_recovers_a_permutation_and_names_each_units_best_partner() -> None:
    perm = np.array([2, 0, 3, 1])
    r = np.full((4, 4), 0.1)
    r[np.arange(4), perm] = 0.95
    r[0, 1] = 0.97  # unit 0's single best partner is 1, but 1 is unit 3's: the assignment keeps 2
    r[3, 1] = 0.99
    m = match_units(r)
    assert [(i, j) for i, j, _ in m.pairs] == [(0, 2), (1, 0), (2, 3), (3, 1)]
    assert m.best[0] == (1, 0.97)
    dead = r.copy()
    dead[2] = np.nan  # a constant unit: no partner above anything
    assert match_units(dead).best[2][1] == -1.0
