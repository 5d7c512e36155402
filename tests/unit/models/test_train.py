from __future__ import annotations

import pytest
import torch

from deepatlas.data import load_digits
from deepatlas.errors import UsageError
from deepatlas.models import FashionCNN, evaluate, train_model


def _train(seed: int) -> dict[str, torch.Tensor]:
    data = load_digits("train").subset(300)
    torch.manual_seed(seed)
    model = FashionCNN(1, 10, (2, 3, 4), 8, input_size=8)
    train_model(model, data, epochs=2, seed=seed, batch_size=32)
    return model.state_dict()


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    a, b, c = _train(0), _train(0), _train(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_training_learns_digits() -> None:
    train, test = load_digits("train"), load_digits("test")
    torch.manual_seed(0)
    model = FashionCNN(1, 10, (8, 16, 16), 32, input_size=8)
    before = evaluate(model, test)
    result = train_model(model, train, epochs=8, seed=0, batch_size=32)
    after = evaluate(model, test)
    assert after > 0.85 > before and result.train_accuracy > 0.8


def test_bad_hyperparameters() -> None:
    with pytest.raises(UsageError):
        train_model(FashionCNN(input_size=8), load_digits("test"), epochs=0)
