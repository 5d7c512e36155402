"""Single-input queries on tiny models with known answers."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from deepatlas.errors import UsageError
from deepatlas.explain.query import (
    characteristic_feature,
    perturb_toward,
    removal_curve,
    single_step_sweep,
)


def _feature_model() -> nn.Module:
    """Two 1x1 filters (weights 1 and 0.5) -> ReLU -> Linear; class 1 reads filter 0 at (y=2, x=5) with weight 5."""
    m = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(128, 2, bias=False))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([1.0, 0.5]).view(2, 1, 1, 1))
        w = torch.zeros(2, 128)
        w[1, 64:] = 0.1  # filter 1 everywhere, weakly
        w[1, 2 * 8 + 5] = 5.0  # filter 0 at (2, 5)
        w[0, :64] = 0.05
        m[3].weight.copy_(w)
    return m.eval()


def test_the_dominant_unit_and_region_are_found() -> None:
    m = _feature_model()
    x = torch.full((1, 1, 8, 8), 0.5)
    x[0, 0, 2, 5] = 1.0
    f = characteristic_feature(m, x, target=1, layers=["1"])  # arg-max of the PG map (the thesis)
    assert (f.layer, f.unit, f.position, f.region) == ("1", 0, (2, 5), (5, 2, 6, 3))
    assert f.score == pytest.approx(5.0)  # gradient 5.0
    f = characteristic_feature(m, x, target=1, layers=["1"], score="activation-x-pg")
    assert (f.unit, f.position) == (0, (2, 5)) and f.score == pytest.approx(5.0)  # activation 1.0 x gradient 5.0
    big = nn.functional.interpolate(x, scale_factor=2)  # a 16x16 input: the map is 16x16 here too
    assert characteristic_feature(nn.Sequential(nn.Upsample(scale_factor=0.5), *m), big, 1, ["2"]).region == (10, 4, 12, 6)


def test_argmax_pg_and_activation_x_pg_pick_different_units() -> None:
    """Filter 1 has the larger gradient (0.8) at (6, 1) but is dark there; filter 0 is bright
    at (3, 3) with gradient 0.5: arg-max PG picks (1, (6, 1)), activation x PG picks (0, (3, 3))."""
    m = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(128, 2, bias=False))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([1.0, 1.0]).view(2, 1, 1, 1))
        w = torch.zeros(2, 128)
        w[1, 3 * 8 + 3] = 0.5
        w[1, 64 + 6 * 8 + 1] = 0.8
        m[3].weight.copy_(w)
    x = torch.full((1, 1, 8, 8), 0.1)
    x[0, 0, 3, 3] = 1.0
    pg = characteristic_feature(m.eval(), x, 1, ["1"])
    ax = characteristic_feature(m, x, 1, ["1"], score="activation-x-pg")
    assert (pg.unit, pg.position, pg.region) == (1, (6, 1), (1, 6, 2, 7)) and pg.score == pytest.approx(0.8)
    assert (ax.unit, ax.position) == (0, (3, 3)) and ax.score == pytest.approx(0.5)
    with pytest.raises(UsageError, match="score"):
        characteristic_feature(m, x, 1, ["1"], score="saliency")


def test_perturbation_increases_the_target_logit_for_small_steps() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3)).eval()
    x = torch.rand(1, 1, 4, 4) * 0.8 + 0.1
    res = perturb_toward(m, x, target=2, steps=6, step_size=0.002)
    with torch.no_grad():
        logits = [float(m(img[None])[0, 2]) for img in res["images"]]
    assert all(b > a for a, b in itertools.pairwise(logits))
    assert float(res["images"].min()) >= 0 and float(res["images"].max()) <= 1
    # class 0 has a constant score 10, class 2 scores the sum of the 16 pixels (8 at 0.5 grey):
    # brightening flips it once the sum passes 10, i.e. after (10 - 8) / (16 * 0.05) = 2.5 steps
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with torch.no_grad():
        lin[1].weight.zero_()
        lin[1].weight[2] = 1.0
        lin[1].bias.copy_(torch.tensor([10.0, 0.0, 0.0]))
    flip = perturb_toward(lin, torch.full((1, 1, 4, 4), 0.5), target=2, steps=5, step_size=0.05)
    assert flip["predicted"][:4] == [0, 0, 0, 2] and flip["flip_step"] == 3
    with pytest.raises(UsageError, match="step size"):
        perturb_toward(m, x, 2, step_size=0.0)
    with pytest.raises(UsageError, match="not an output node"):
        perturb_toward(m, x, 7)


def test_removal_curve_keeps_holding_until_the_core_goes() -> None:
    from tests.unit.explain.test_switchgate import _data, _toy

    model = _toy()
    pos, _ = _data(model)
    curve = removal_curve(model, pos, 1, "1", [2, 3, 4, 5, 0, 1], 6, seeds=(0, 1))
    assert curve["ordered"][:5] == [1.0] * 5  # the four unused units and then h0 go: still class 1
    assert curve["ordered"][6] == 0.0  # all closed: scores (0, 0) -> class 0
    assert len(curve["random_mean"]) == 7
    with pytest.raises(UsageError):
        removal_curve(model, pos, 1, "1", [0, 0], 6)


def test_single_step_sweep_by_hand() -> None:
    """Class 2 scores the pixel sum, class 0 a constant 10; at 0.5 grey (sum 8) the logit
    gradient wrt every pixel is 1, so one step of eps moves every pixel by eps: the prediction
    flips once 8 + 16 eps > 10, i.e. eps > 0.125; pixels clip at 1 (sum 16)."""
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with torch.no_grad():
        lin[1].weight.zero_()
        lin[1].weight[2] = 1.0
        lin[1].bias.copy_(torch.tensor([10.0, 0.0, 0.0]))
    x = torch.full((2, 1, 4, 4), 0.5)
    res = single_step_sweep(lin, x, torch.tensor([0, 0]), 2, [0.1, 0.12, 0.13, 2.0], output="logit")
    assert res["success"] == [0.0, 0.0, 1.0, 1.0]
    assert res["induced_error"] == [0.0, 0.0, 1.0, 1.0]
    assert res["grad_max"] == pytest.approx([1.0, 1.0])
    # with y = the probability, d p2 / d pixel = p2 (1 - p2): small, so the same eps does less
    prob = single_step_sweep(lin, x, torch.tensor([0, 0]), 2, [0.13, 100.0])
    p2 = torch.softmax(torch.tensor([10.0, 0.0, 8.0]), 0)[2]
    assert prob["grad_max"][0] == pytest.approx(float(p2 * (1 - p2)))
    assert prob["success"] == [0.0, 1.0]  # the same step size does far less along the probability's gradient
    with pytest.raises(UsageError, match="step sizes"):
        single_step_sweep(lin, x, torch.tensor([0, 0]), 2, [0.0])
