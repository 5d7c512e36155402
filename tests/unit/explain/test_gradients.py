"""Prediction gradients (explain/gradients.py) by hand on a two-layer net."""

from __future__ import annotations

import torch
from torch import nn

from deepatlas.explain.gradients import PredictionGradients, unit_scores


def test_prediction_gradients_and_unit_scores() -> None:
    m = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False)).double()
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        m[2].weight.copy_(torch.tensor([[2.0, -1.0], [0.5, 4.0]]))
    x = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(PredictionGradients(m).attribute(x, 0), torch.tensor([[2.0, -1.0]], dtype=torch.float64))
    p = PredictionGradients(m, output="prob").attribute(x, 0)
    probs = m(x).softmax(1)[0]
    # d p0 / d x = p0 (1 - p0) * d(z0 - z1)/dx
    want = probs[0] * probs[1] * torch.tensor([2.0 - 0.5, -1.0 - 4.0], dtype=torch.float64)
    assert torch.allclose(p[0], want)
    maps = torch.zeros(2, 3, 2, 2)
    maps[0, 1] = torch.tensor([[3.0, 0.0], [0.0, 4.0]])
    assert unit_scores(maps)[0, 1] == 5.0 and unit_scores(torch.tensor([[-2.0, 1.0]]))[0, 0] == -2.0
