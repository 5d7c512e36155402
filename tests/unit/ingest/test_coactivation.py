from __future__ import annotations

import tempfile

import numpy as np
import pytest
import torch
from torch import nn

from deepatlas.data import load_digits
from deepatlas.data.base import ImageSet
from deepatlas.errors import IngestError, UsageError
from deepatlas.ingest.coactivation import compute_coactivation, plan_blocks
from deepatlas.ingest.pairs import SparsifyParams, select_pairs
from deepatlas.ingest.tables import build_tables
from deepatlas.models import MLP, evaluate, train_model
from tests.helpers import pixels


@pytest.fixture(scope="module")
def digits_mlp() -> tuple[nn.Module, ImageSet]:
    train, test = load_digits("train"), load_digits("test")
    torch.manual_seed(0)
    model = MLP(64, (24, 12), 10).double()
    data = ImageSet.from_tensors(pixels(train).double(), train.labels, train.class_names, "digits", "train")
    train_model(model, data, epochs=30, seed=0, batch_size=64)
    test64 = ImageSet.from_tensors(pixels(test).double(), test.labels, test.class_names, "digits", "test")
    assert evaluate(model, test64) > 0.85  # really trained
    return model, test64


def test_correlations_equal_numpy_on_explicit_activations(digits_mlp) -> None:  # type: ignore[no-untyped-def]
    model, data = digits_mlp
    res = compute_coactivation(model, data, batch_size=37)
    with torch.no_grad():
        x = pixels(data).flatten(1)
        h1 = torch.relu(model.fc1(x))
        h2 = torch.relu(model.fc2(h1))
        probs = model.out(h2).softmax(1)
    nodes = torch.cat([h1, h2, probs], 1).numpy()
    live = nodes.std(0) > 1e-9
    want = np.corrcoef(nodes[:, live], rowvar=False)
    assert res.units.r is not None and res.pixels.r is not None and res.passes == 1
    got = res.units.r.numpy()[np.ix_(live, live)]
    assert np.abs(got - want).max() < 1e-6
    assert res.units.dead_x.numpy().tolist() == (~live).tolist()
    px = x.numpy()
    pl = px.std(0) > 1e-9
    want_px = np.corrcoef(np.hstack([px[:, pl], nodes[:, live]]), rowvar=False)[: pl.sum(), pl.sum():]
    assert np.abs(res.pixels.r.numpy()[np.ix_(pl, live)] - want_px).max() < 1e-6
    assert res.confusion.sum() == len(data)
    assert res.accuracy == pytest.approx(evaluate(model, data))


def test_logits_option_correlates_raw_scores(digits_mlp) -> None:  # type: ignore[no-untyped-def]
    model, data = digits_mlp
    res = compute_coactivation(model, data, class_values="logits")
    with torch.no_grad():
        logits = model(pixels(data).flatten(1)).numpy()
    want = np.corrcoef(logits, rowvar=False)
    assert res.units.r is not None
    assert np.abs(res.units.r.numpy()[-10:, -10:] - want).max() < 1e-6


def test_nan_output_is_refused(digits_mlp) -> None:  # type: ignore[no-untyped-def]
    _, data = digits_mlp

    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(64, 10).double()
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.act(self.fc(x.flatten(1)))
            return out / torch.zeros(())  # inf and nan

    with pytest.raises(IngestError, match="NaN or Inf"):
        compute_coactivation(Broken(), data, layers=["act"])


def test_wrong_image_shape_and_class_count(digits_mlp) -> None:  # type: ignore[no-untyped-def]
    model, data = digits_mlp
    wrong = ImageSet.from_tensors(torch.rand(4, 1, 5, 5, dtype=torch.float64), torch.zeros(4, dtype=torch.long), data.class_names, "x", "test")
    with pytest.raises(IngestError, match="cannot take images"):
        compute_coactivation(model, wrong)
    three = ImageSet.from_tensors(pixels(data), data.labels % 3, ("a", "b", "c"), "x", "test")
    with pytest.raises(IngestError, match="outputs 10 scores but the data set has 3"):
        compute_coactivation(model, three)
    with pytest.raises(UsageError):
        compute_coactivation(model, data, class_values="softmax")


@pytest.mark.parametrize(("params", "store"), [
    (SparsifyParams(), "memory"), (SparsifyParams(min_abs_r=None, top_k=3), "disk"),
    (SparsifyParams(min_abs_r=0.2, top_k=0), "none"), (SparsifyParams(), "none"),
])
def test_blockwise_passes_choose_the_same_edges_as_the_dense_matrix(digits_mlp, params, store) -> None:  # type: ignore[no-untyped-def]
    model, data = digits_mlp
    forwards: list[int] = []
    handle = model.register_forward_hook(lambda *_: forwards.append(1))
    dense = compute_coactivation(model, data, batch_size=100, sparsify=params)
    handle.remove()
    dense_forwards = len(forwards)
    m = dense.n_hidden + 10  # 46 nodes: a budget of 5 rows (46 * 8 bytes each) takes 10 blocks
    budget = (5 + 64) * m * 8 / 2**20  # the 64 pixels' co-moments with every node come first
    assert plan_blocks(m, budget, 8, 64) == 5
    seen: list[int] = []
    forwards.clear()
    handle = model.register_forward_hook(lambda *_: forwards.append(1))
    cache = {"memory": {}, "disk": {"cache_mb": 0.0}, "none": {"cache_mb": 0.0, "spill": False}}[store]
    try:
        block = compute_coactivation(model, data, batch_size=100, max_matrix_mb=budget, sparsify=params, pixel_grid=(8, 8),
                                     progress=lambda k, total: seen.append(total), **cache)
    finally:
        handle.remove()
    assert block.passes == 10 and block.units.r is None and block.pairs is not None and block.cache == store
    batches = -(-len(data) // 100)
    if store == "none":  # the model runs once per block, and the progress total counts every pass
        assert block.forward_passes == 10 and set(seen) == {10 * len(data)} and len(forwards) == dense_forwards + 9 * batches
    else:  # as many forward calls as the dense path: later blocks read the kept values
        assert block.forward_passes == 1 and set(seen) == {len(data)} and len(forwards) == dense_forwards
    assert dense.units.r is not None
    is_class = np.arange(m) >= m - 10
    i, j, _ = select_pairs(dense.units.r.numpy(), is_class, dense.units.dead_x.numpy(), params, n=len(data))
    assert block.pairs.i.tolist() == i.tolist() and block.pairs.j.tolist() == j.tolist()
    assert dense.pairs is not None and dense.pairs.i.tolist() == i.tolist() and dense.pairs.j.tolist() == j.tolist()
    assert block.pairs.counts == dense.pairs.counts  # every filter passed the same pairs
    assert np.abs(block.pairs.r - dense.units.r.numpy()[i, j]).max() < 1e-9
    assert torch.allclose(block.units.std_x, dense.units.std_x) and torch.equal(block.units.dead_x, dense.units.dead_x)
    assert torch.equal(block.confusion, dense.confusion)
    a, b = build_tables(dense, "run", params), build_tables(block, "run", params)
    assert a.edge_counts() == b.edge_counts()
    with pytest.raises(UsageError, match="other sparsify"):
        build_tables(block, "run", SparsifyParams(top_k=params.top_k + 1))


def test_the_spilled_node_values_are_removed_when_a_blockwise_pass_fails(digits_mlp, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    model, data = digits_mlp
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    calls = 0

    def fail_late(_module, _inputs, _output) -> None:  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls > 4:  # after the node store was opened and written to
            raise RuntimeError("the device went away")

    seen: list[str] = []
    handle = model.register_forward_hook(fail_late)
    try:
        with pytest.raises(RuntimeError, match="went away") as failure:  # its traceback keeps the frames alive
            compute_coactivation(model, data, batch_size=100, max_matrix_mb=(5 + 64) * 46 * 8 / 2**20, pixel_grid=(8, 8),
                                 cache_mb=0.0, progress=lambda *_: seen.extend(p.name for p in tmp_path.iterdir()))
    finally:
        handle.remove()
    assert any(name.startswith("deepatlas-nodes-") for name in seen)  # it did spill to disk
    assert list(tmp_path.iterdir()) == [], failure  # and the file went with the failure, not at garbage collection


def test_a_budget_below_one_row_is_refused() -> None:
    with pytest.raises(UsageError, match="cannot hold one row"):
        plan_blocks(10_000, 0.01)


def test_pixel_grid_pools_large_inputs_and_can_be_switched_off() -> None:
    from deepatlas.ingest.coactivation import pixel_shape

    assert pixel_shape((3, 224, 224)) == (3, 32, 32)
    assert pixel_shape((1, 28, 28)) == (1, 28, 28)
    assert pixel_shape((3, 224, 224), (7, 7)) == (3, 7, 7) and pixel_shape((3, 224, 224), "off") == (3, 0, 0)
    # a ResNet-50 (22,730 nodes) under 512 MB: the grid shrinks so the pixel statistics take <= 128 MB
    c, gh, gw = pixel_shape((3, 224, 224), n_nodes=22_730, max_matrix_mb=512)
    assert (gh, gw) == (15, 15) and c * gh * gw * 22_730 * 8 <= 128 * 2**20
    assert pixel_shape((3, 224, 224), n_nodes=3_914, max_matrix_mb=512) == (3, 32, 32)
    with pytest.raises(UsageError, match="pixel grid"):
        pixel_shape((3, 8, 8), (0, 4))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).double().eval()
    images = torch.rand(40, 3, 96, 96, dtype=torch.float64)
    data = ImageSet.from_tensors(images, torch.arange(40) % 3, ("a", "b", "c"), "colour", "test")
    res = compute_coactivation(model, data, batch_size=16)
    assert res.pixel_shape == (3, 32, 32) and res.pixels.r is not None and res.pixels.r.shape == (3 * 32 * 32, 4 + 3)
    # each grid cell is the mean of a 3x3 patch; its r with a unit is numpy's r of that mean
    with torch.no_grad():
        unit0 = torch.relu(model[0](images)).mean((2, 3))[:, 0].numpy()
    cell = images[:, 1, 3:6, 9:12].mean((1, 2)).numpy()  # channel 1, row 1, col 3
    want = np.corrcoef(cell, unit0)[0, 1]
    assert abs(float(res.pixels.r[1 * 1024 + 1 * 32 + 3, 0]) - want) < 1e-9
    tables = build_tables(res, "run@x")
    assert len(tables.pixels) == 3 * 32 * 32
    off = compute_coactivation(model, data, batch_size=16, pixel_grid="off")
    assert off.pixels.r is not None and off.pixels.r.shape == (0, 7) and len(build_tables(off, "run@y").pixels) == 0
    assert torch.allclose(off.units.r, res.units.r)  # type: ignore[arg-type]
