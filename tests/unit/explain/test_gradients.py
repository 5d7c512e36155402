"""Prediction gradients (explain/gradients.py) by hand on a two-layer net."""

from __future__ import annotations

import torch
from torch import nn

from deepatlas.explain.gradients import PredictionGradients, unit_scores
from tests.helpers import pixels


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


def test_a_token_layers_gradient_scores_are_per_feature_not_per_token() -> None:
    """torchvision's stock ViT: an MLP activation is (B, 5 tokens, 24 features) and ingest makes
    24 units of it; its GRADIENT scores must be (classes, 24), each the norm over the tokens of
    the class-mean PG of that feature (before: (classes, 5), one per token position)."""
    from torchvision.models import VisionTransformer

    from deepatlas.data.base import ImageSet
    from deepatlas.explain.aggregate import class_gradient_scores
    from deepatlas.explain.experiments import pg_ranking

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=24,
                            num_classes=3).eval()
    layer = "encoder.layers.encoder_layer_0.mlp.1"
    data = ImageSet.from_tensors(torch.rand(12, 3, 32, 32), torch.arange(12) % 3, ("a", "b", "c"), "toy", "test")
    got = class_gradient_scores(vit, data, [layer], per_class=4, kinds={layer: "tokens"})[layer]
    assert got.shape == (3, 24)
    pg = PredictionGradients(vit)
    for c in range(3):
        x = pixels(data)[data.labels == c]
        (g,) = pg.attribute_layers(x, torch.full((len(x),), c), [layer])  # (4, T=5, F=24)
        want = g.to(torch.float64).mean(0).norm(dim=0)  # per feature, over the tokens
        assert torch.allclose(got[c].double(), want, atol=1e-6)
    ranking = pg_ranking(vit, pixels(data)[data.labels == 0], 0, [layer], kinds={layer: "tokens"})
    assert len(ranking) == 24 and {i for _, i, _ in ranking} == set(range(24))
