"""Spearman co-activation: streaming ranks against scipy's spearmanr."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from deepatlas.data import load_digits
from deepatlas.data.base import ImageSet
from deepatlas.errors import UsageError
from deepatlas.ingest import ranks as ranks_module
from deepatlas.ingest.coactivation import compute_coactivation
from deepatlas.ingest.pairs import noise_floor
from deepatlas.ingest.ranks import RankSketch, pair_bound
from deepatlas.ingest.stats import CoMoments
from deepatlas.models import MLP, train_model
from tests.helpers import pixels


def _columns(n: int, seed: int = 0) -> torch.Tensor:
    """Monotone transforms, ReLU zeros (ties), heavy tails and rounded values (many ties)."""
    z = torch.randn(n, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.stack([z[:, 0], torch.relu(z[:, 0] + z[:, 1]), torch.exp(3 * z[:, 2]), z[:, 2] ** 3 + 0.1 * z[:, 3],
                        torch.round(2 * z[:, 4])], 1)


def _rho(x: torch.Tensor, bins: int, batch: int = 97) -> tuple[np.ndarray, RankSketch]:
    positions = np.unique(np.linspace(0, len(x) - 1, min(len(x), bins)).round().astype(np.int64))
    sk = RankSketch(x[positions], bins)
    for s in range(0, len(x), batch):
        sk.update(x[s : s + batch])
    acc = CoMoments(x.shape[1])
    for s in range(0, len(x), batch):
        acc.update(sk.transform(x[s : s + batch]))
    r = acc.compute().r
    assert r is not None
    return r.numpy(), sk


def test_ranks_are_exact_when_the_sample_holds_every_value() -> None:
    x = _columns(500)
    got, sk = _rho(x, bins=2048)
    want = spearmanr(x.numpy()).statistic
    assert np.abs(got - want).max() < 1e-6
    assert sk.bound() == 0.0  # every value an atom: no rank is interpolated
    naive = CoMoments(5)  # ranking each batch on its own is not Spearman's rho
    for s in range(0, 500, 97):
        naive.update(torch.from_numpy(np.argsort(np.argsort(x[s : s + 97].numpy(), 0), 0)).double())
    naive_r = naive.compute().r
    assert naive_r is not None and np.abs(naive_r.numpy() - want).max() > 1e-3


@pytest.mark.parametrize("bins", [64, 256])
def test_binned_ranks_stay_within_the_stated_bound(bins: int) -> None:
    x = _columns(20_000, seed=1)
    got, sk = _rho(x, bins=bins, batch=1000)
    err = np.abs(got - spearmanr(x.numpy()).statistic).max()
    bound = sk.bound()
    assert 0 < err <= bound, (err, bound)  # a worst case: the measured error is far below it
    assert bound < {64: 2.0, 256: 0.3}[bins]


@pytest.mark.parametrize("bins", [2048, 64])
def test_slices_of_columns_give_what_the_whole_batch_gives(monkeypatch: pytest.MonkeyPatch, bins: int) -> None:
    """Built, counted and ranked a few columns at a time (tiny slices forced here; real ones hold
    ~0.5M values), the sketch is the one made in one piece, and a batch of the wrong width is refused."""
    x = _columns(1500, seed=2)
    whole, _ = _rho(x, bins=bins)
    monkeypatch.setattr(ranks_module, "CHUNK_VALUES", 7)  # one or two columns a slice at batch 97
    monkeypatch.setattr(ranks_module, "SORT_VALUES", 5)
    sliced, sk = _rho(x, bins=bins)
    assert np.array_equal(sliced, whole)
    assert len(sk._slices(3)) == 3 and len(sk._slices(97)) == 5
    with pytest.raises(ValueError, match=r"\(B, 5\)"):
        sk.update(torch.zeros(4, 6))
    with pytest.raises(ValueError, match=r"\(B, 5\)"):
        sk.transform(torch.zeros(4, 4))


def test_pair_bound_is_the_formula() -> None:
    assert pair_bound(0.0, 0.0) == 0.0
    assert pair_bound(0.1, 0.2) == pytest.approx(2 * (0.1 + 0.2 + 0.02) / (0.9 * 0.8))
    assert pair_bound(1.0, 0.0) == float("inf")


def test_spearman_noise_floor_uses_the_rank_variance() -> None:
    # 1.06 / (n - 3) (Fieller et al.): a little above Pearson's floor at the same n and tests
    p, s = noise_floor(100, 1000), noise_floor(100, 1000, spearman=True)
    assert p < s < 1.1 * p


@pytest.fixture(scope="module")
def digits_mlp() -> tuple[nn.Module, ImageSet]:
    train, test = load_digits("train"), load_digits("test")
    torch.manual_seed(0)
    model = MLP(64, (24, 12), 10).double()
    train_model(model, ImageSet.from_tensors(pixels(train).double(), train.labels, train.class_names, "digits", "train"),
                epochs=20, seed=0, batch_size=64)
    return model, ImageSet.from_tensors(pixels(test).double(), test.labels, test.class_names, "digits", "test")


def _nodes(model: nn.Module, data: ImageSet) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        x = pixels(data).flatten(1)
        h1 = torch.relu(model.fc1(x))
        h2 = torch.relu(model.fc2(h1))
        probs = model.out(h2).softmax(1)
    return x.numpy(), torch.cat([h1, h2, probs], 1).numpy()


@pytest.mark.parametrize("bins", [None, 64])
def test_spearman_ingest_equals_scipy_on_the_units_and_pixels(digits_mlp, monkeypatch, bins) -> None:  # type: ignore[no-untyped-def]
    model, data = digits_mlp
    if bins is not None:  # fewer bins than images: the counting pass runs and rho is approximate
        monkeypatch.setattr(ranks_module, "RANK_BINS", bins)
    res = compute_coactivation(model, data, batch_size=50, correlation="spearman")
    px, nodes = _nodes(model, data)
    live = nodes.std(0) > 1e-9
    want = spearmanr(nodes[:, live]).statistic
    assert res.units.r is not None and res.pixels.r is not None and res.correlation == "spearman"
    err = np.abs(res.units.r.numpy()[np.ix_(live, live)] - want).max()
    pl = px.std(0) > 1e-9
    want_px = spearmanr(np.hstack([px[:, pl], nodes[:, live]])).statistic[: pl.sum(), pl.sum():]
    err_px = np.abs(res.pixels.r.numpy()[np.ix_(pl, live)] - want_px).max()
    if bins is None:
        assert res.rank_error_bound == 0.0 and err < 1e-6 and err_px < 1e-6
    else:
        assert res.rank_bins == 64 and 0 < max(err, err_px) <= res.rank_error_bound
    pearson = np.corrcoef(nodes[:, live], rowvar=False)
    assert np.abs(want - pearson).max() > 0.05  # the two really differ on this model
    # the node properties keep the raw values' statistics, not the ranks'
    assert np.abs(res.units.mean_x.numpy() - nodes.mean(0)).max() < 1e-9
    assert np.abs(res.units.std_x.numpy() - nodes.std(0)).max() < 1e-9
    assert np.abs(res.pixels.mean_x.numpy() - px.mean(0)).max() < 1e-9


def test_spearman_blockwise_chooses_the_dense_pairs(digits_mlp) -> None:  # type: ignore[no-untyped-def]
    model, data = digits_mlp
    dense = compute_coactivation(model, data, batch_size=100, correlation="spearman")
    m = dense.n_hidden + 10
    block = compute_coactivation(model, data, batch_size=100, correlation="spearman", pixel_grid=(8, 8),
                                 max_matrix_mb=(5 + 64) * m * 8 / 2**20)
    assert block.passes > 1 and dense.pairs is not None and block.pairs is not None
    assert block.pairs.i.tolist() == dense.pairs.i.tolist() and block.pairs.j.tolist() == dense.pairs.j.tolist()
    assert np.abs(block.pairs.r - dense.pairs.r).max() < 1e-6


def test_an_unknown_correlation_is_refused(digits_mlp) -> None:  # type: ignore[no-untyped-def]
    model, data = digits_mlp
    with pytest.raises(UsageError, match="correlation"):
        compute_coactivation(model, data, correlation="kendall")
