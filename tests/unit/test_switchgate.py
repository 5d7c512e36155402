"""Switch gates on a toy model whose core units are known."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepatlas.errors import UsageError
from deepatlas.explain.switchgate import INPUT, SwitchGates, holding_rate, phi


def _toy() -> nn.Module:
    """h = relu(W x): h0 = x0, h1 = x1, h2..h5 = noise features with zero outgoing weight.
    out0 = h0 - h1, out1 = h1 - h0: class 0 iff x0 > x1. Units 0 and 1 are the core."""
    m = nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(), nn.Linear(6, 2, bias=False))
    with torch.no_grad():
        w1 = torch.zeros(6, 4)
        w1[0, 0] = w1[1, 1] = 1.0
        w1[2:, 2:] = torch.tensor([[1.0, 0.5], [0.3, 1.0], [1.0, 1.0], [0.2, 0.7]])
        m[0].weight.copy_(w1)
        w2 = torch.zeros(2, 6)
        w2[0, 0], w2[0, 1], w2[1, 0], w2[1, 1] = 1.0, -1.0, -1.0, 1.0
        m[2].weight.copy_(w2)
    return m.eval()


def _data(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Positives: predicted class 1 (x1 > x0). Class 1, not 0, so that closing every gate
    (all-zero scores, argmax 0) cannot hold the prediction by accident."""
    x = torch.rand(400, 4, generator=torch.Generator().manual_seed(0))
    preds = model(x).argmax(1)
    return x[preds == 1][:100], x[preds == 0][:100]


def test_gates_find_the_core_units_and_binarise() -> None:
    model = _toy()
    pos, neg = _data(model)
    res = SwitchGates(model, ["1"]).fit(pos, neg, target=1)
    assert res.kept["1"] == [0, 1]
    b = res.gates["1"]
    assert bool(((b < 0.1) | (b > 0.9)).all())  # converged near 0/1
    assert res.holding_rate == 1.0  # the other units contribute nothing, so predictions hold exactly
    assert len(res.random_holding_rates) == 5
    assert res.fit_history[-1] < min(0.1, res.fit_history[0])  # the gated model still separates the set
    assert all(p.requires_grad for p in model.parameters())  # the model is handed back unfrozen
    assert sum(len(mod._forward_hooks) for mod in model.modules()) == 0


def test_holding_rate_exact_on_chosen_masks() -> None:
    model = _toy()
    pos, _ = _data(model)
    core = torch.tensor([1.0, 1, 0, 0, 0, 0])
    assert holding_rate(model, pos, 1, {"1": core}) == 1.0
    only_h0 = torch.tensor([1.0, 0, 0, 0, 0, 0])  # out1 = -h0 < out0 = h0 whenever x0 > 0
    assert holding_rate(model, pos, 1, {"1": only_h0}) == pytest.approx(float((pos[:, 0] == 0).float().mean()))
    assert holding_rate(model, pos, 1, {"1": torch.zeros(6)}) == 0.0


def test_input_gates_pick_the_informative_inputs() -> None:
    model = _toy()
    pos, neg = _data(model)
    res = SwitchGates(model, [INPUT]).fit(pos, neg, target=1)
    assert res.kept[INPUT] == [0, 1]  # x2, x3 feed only the unused units


def test_phi_and_errors() -> None:
    assert float(phi(torch.tensor(0.5))) == 0.5 and float(phi(torch.tensor(0.0))) < 0.1
    with pytest.raises(UsageError, match="unknown layer"):
        SwitchGates(_toy(), ["nope"])
    with pytest.raises(UsageError, match="balanced set"):
        SwitchGates(_toy(), ["1"]).fit(torch.zeros(0, 4), torch.rand(3, 4), target=0)
