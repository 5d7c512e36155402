from __future__ import annotations

import itertools

import pytest
import torch

from deepatlas.errors import UsageError
from deepatlas.explain.factorize import coupled_nmf, spectra


def _planted(rank: int = 3, n: int = 120, seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    f = torch.rand(n, rank, generator=g, dtype=torch.float64)
    mats = {
        "pixels": torch.rand(40, rank, generator=g, dtype=torch.float64) @ f.T,
        "relu1": 5.0 * torch.rand(15, rank, generator=g, dtype=torch.float64) @ f.T,  # another scale
        "relu2": torch.rand(8, rank, generator=g, dtype=torch.float64) @ f.T,
    }
    return mats, f


def test_objective_never_increases() -> None:
    mats, _ = _planted()
    res = coupled_nmf(mats, rank=4, iters=200, seed=1)
    obj = res.objective
    assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(obj))
    assert obj[-1] < obj[0] / 10


def test_recovers_a_planted_low_rank_structure() -> None:
    mats, _ = _planted(rank=3)
    res = coupled_nmf(mats, rank=3, iters=3000)
    for name, x in mats.items():
        rel = res.rmse[name] / float(torch.sqrt((x**2).mean()))
        assert rel < 0.02, (name, rel)
    low = coupled_nmf(mats, rank=1, iters=500)
    assert sum(low.rmse.values()) > 5 * sum(res.rmse.values())  # rank 1 cannot fit a rank-3 structure
    assert res.loadings["relu1"].shape == (15, 3) and res.image_factor.shape == (120, 3)
    assert bool((res.image_factor >= 0).all()) and all(bool((w >= 0).all()) for w in res.loadings.values())


def test_spectra_and_errors() -> None:
    mats, _ = _planted(rank=2)
    sp = spectra(mats, k=5)
    assert sp["pixels"][0] == 1.0 and sp["pixels"][2] < 1e-10  # rank 2: the third singular value vanishes
    with pytest.raises(UsageError, match="negative"):
        coupled_nmf({"a": -torch.ones(2, 3)}, rank=1)
    with pytest.raises(UsageError, match="share their columns"):
        coupled_nmf({"a": torch.ones(2, 3), "b": torch.ones(2, 4)}, rank=1)
    with pytest.raises(UsageError, match="rank"):
        coupled_nmf({"a": torch.ones(2, 3)}, rank=0)


def test_conv_rows_are_channels_times_positions() -> None:
    """conv(1->3, 6x6) -> ReLU -> MaxPool(2) -> conv(3->2, 2x2 maps) -> ReLU -> Linear(8 -> 5) -> ReLU:
    the first layer gives 3 channels x 3 x 3 positions of its pooled map = 27 rows, the second
    (no pooling after it) 2 x 2 x 2 = 8, the dense layer 5; channel means one row per channel."""
    from torch import nn

    from deepatlas.explain.factorize import activation_matrices

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 2, 2), nn.ReLU(),
                      nn.Flatten(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 2)).double().eval()
    x = torch.rand(9, 1, 6, 6, dtype=torch.float64)
    mats, info = activation_matrices(m, x, ["1", "4", "7"])
    assert info["1"]["source"] == "2" and info["1"]["shape"] == [3, 3, 3]
    assert mats["1"].shape == (3 * 3 * 3, 9)  # channels x positions of the pooled map
    assert info["4"]["source"] == "4" and mats["4"].shape == (2 * 2 * 2, 9)
    assert mats["7"].shape == (5, 9)
    # row c * H * W + y * W + x of the first layer is channel c at (y, x) of the pooled map, per image
    pooled = m[2](m[1](m[0](x)))
    assert torch.equal(mats["1"][1 * 9 + 2 * 3 + 1], pooled[:, 1, 2, 1])
    unpooled, info2 = activation_matrices(m, x, ["1"], pooled=False)
    assert unpooled["1"].shape == (3 * 6 * 6, 9) and info2["1"]["source"] == "1"
    means, _ = activation_matrices(m, x, ["1", "4"], units="channel-means")
    assert means["1"].shape == (3, 9) and means["4"].shape == (2, 9)
    assert torch.allclose(means["1"][2], m[1](m[0](x))[:, 2].mean((1, 2)))
    with pytest.raises(UsageError, match="units"):
        activation_matrices(m, x, ["1"], units="pixels")
