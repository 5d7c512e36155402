from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepatlas.errors import IngestError
from deepatlas.ingest.stats import CoMoments, Confusion


def _data(n: int = 300, m: int = 7, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 3, generator=g, dtype=torch.float64)
    mix = torch.randn(3, m, generator=g, dtype=torch.float64)
    return base @ mix + 0.3 * torch.randn(n, m, generator=g, dtype=torch.float64) + 5.0


def _feed(acc: CoMoments, x: torch.Tensor, y: torch.Tensor | None, bs: int) -> CoMoments:
    for s in range(0, len(x), bs):
        acc.update(x[s : s + bs], None if y is None else y[s : s + bs])
    return acc


@pytest.mark.parametrize("bs", [1, 7, 64, 300])
def test_symmetric_matches_numpy_corrcoef(bs: int) -> None:
    x = _data()
    r = _feed(CoMoments(7), x, None, bs).compute().r.numpy()
    assert np.abs(r - np.corrcoef(x.numpy(), rowvar=False)).max() < 1e-10


def test_cross_block_matches_numpy() -> None:
    x, y = _data(m=5, seed=1), _data(m=4, seed=2)
    got = _feed(CoMoments(5, 4), x, y, 33).compute()
    want = np.corrcoef(np.hstack([x.numpy(), y.numpy()]), rowvar=False)[:5, 5:]
    assert np.abs(got.r.numpy() - want).max() < 1e-10
    assert np.allclose(got.std_x.numpy(), x.numpy().std(0)) and np.allclose(got.mean_y.numpy(), y.numpy().mean(0))


def test_order_and_merge_independence() -> None:
    x = _data(n=200)
    whole = _feed(CoMoments(7), x, None, 200).compute().r
    shuffled = _feed(CoMoments(7), x[torch.randperm(200, generator=torch.Generator().manual_seed(3))], None, 17).compute().r
    a, b = _feed(CoMoments(7), x[:120], None, 50), _feed(CoMoments(7), x[120:], None, 9)
    merged = a.merge(b).compute().r
    assert torch.allclose(whole, shuffled, atol=1e-12) and torch.allclose(whole, merged, atol=1e-12)


def test_dead_units_get_zero_and_a_flag_not_nan() -> None:
    x = _data(n=100, m=4)
    x[:, 1] = 0.0  # a dead ReLU
    x[:, 3] = 2.5  # a constant
    c = _feed(CoMoments(4), x, None, 13).compute()
    assert c.dead_x.tolist() == [False, True, False, True]
    assert not torch.isnan(c.r).any()
    assert (c.r[1] == 0).all() and (c.r[:, 3] == 0).all()
    assert c.r[0, 0] == 1.0 and c.r[1, 1] == 0.0


def test_float32_accumulation_is_accurate_on_offset_data() -> None:
    x = _data(n=5000) + 1000.0  # large mean: naive sum-of-products in float32 would fail
    r32 = _feed(CoMoments(7, dtype=torch.float32), x.float(), None, 500).compute().r.double().numpy()
    assert np.abs(r32 - np.corrcoef(x.numpy(), rowvar=False)).max() < 1e-3


def test_shape_errors() -> None:
    acc = CoMoments(3)
    with pytest.raises(IngestError):
        acc.update(torch.zeros(4, 2))
    with pytest.raises(IngestError, match="at least 2"):
        acc.compute()
    with pytest.raises(IngestError):
        CoMoments(3, 2).update(torch.zeros(4, 3))


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 60), st.integers(1, 5), st.integers(1, 25), st.integers(0, 10_000))
def test_any_batching_agrees_with_numpy(n: int, m: int, bs: int, seed: int) -> None:
    x = torch.randn(n, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    got = _feed(CoMoments(m), x, None, bs).compute().r.numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        want = np.atleast_2d(np.corrcoef(x.numpy(), rowvar=False))
    ok = np.isfinite(want)
    assert np.abs(got[ok] - want[ok]).max() < 1e-6


def test_confusion_counts() -> None:
    conf = Confusion(3)
    conf.update(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 0, 1, 2]))
    conf.merge(Confusion(3)).update(torch.tensor([2]), torch.tensor([1]))
    assert conf.compute().tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_dead_is_relative_to_the_unit_scale() -> None:
    # units of a randomly initialised network can live at 1e-9 and still correlate strongly;
    # only a constant unit (at any level, including 0) is dead
    g = torch.Generator().manual_seed(0)
    base = torch.randn(200, 1, generator=g, dtype=torch.float64)
    tiny = 1e-9 * (base + 0.3 * torch.randn(200, 1, generator=g, dtype=torch.float64))
    x = torch.cat([base, tiny, torch.full((200, 1), 5.0, dtype=torch.float64), torch.zeros(200, 1, dtype=torch.float64),
                   (1e5 + base.float()).double()], 1)
    acc = CoMoments(5)
    for chunk in x.split(37):
        acc.update(chunk)
    c = acc.compute()
    assert c.dead_x.tolist() == [False, False, True, True, False]
    want = np.corrcoef(x[:, [0, 1, 4]].numpy(), rowvar=False)
    assert c.r is not None and np.abs(c.r[[0, 1, 4]][:, [0, 1, 4]].numpy() - want).max() < 1e-9
    assert abs(float(c.r[0, 1])) > 0.9
