"""Fixtures shared by unit and e2e tests: small real data, a small really-trained model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from deepatlas.data import load_fashion_mnist
from deepatlas.data.base import ImageSet
from deepatlas.models import FashionCNN, evaluate, save_checkpoint, train_model

torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def _own_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test's $DEEPATLAS_HOME is a temporary folder (an e2e server fixture sets its own
    inside it): nothing a test writes (checkpoints of a stopped ingest, models) reaches ~/.deepatlas."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEEPATLAS_HOME", str(tmp_path_factory.mktemp("home")))
        yield


@pytest.fixture(scope="session")
def fashion_test() -> ImageSet:
    """The real Fashion-MNIST test split (10,000 images)."""
    return load_fashion_mnist("test")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A narrow FashionCNN really trained for one epoch on 6,000 Fashion-MNIST images."""
    train = load_fashion_mnist("train").subset(6000)
    test = load_fashion_mnist("test").subset(2000)
    torch.manual_seed(0)
    config = {"in_channels": 1, "n_classes": 10, "widths": [4, 8, 8], "hidden": 16, "input_size": 28}
    model = FashionCNN(1, 10, (4, 8, 8), 16, 28)
    train_model(model, train, epochs=2, seed=0, mean=0.286, std=0.353)
    acc = evaluate(model, test, mean=0.286, std=0.353)
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    save_checkpoint(path, model, "fashion_cnn", config, {
        "name": "tiny-cnn", "class_names": list(train.class_names), "input_shape": [1, 28, 28],
        "mean": 0.286, "std": 0.353, "accuracy": acc, "dataset": "fashion-mnist",
    })
    return path
