"""Reference architectures, training and checkpoints."""

from __future__ import annotations

from deepatlas.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from deepatlas.models.loading import load_model, reload_model
from deepatlas.models.reference import ARCHITECTURES, MLP, FashionCNN, build_model
from deepatlas.models.resnet import ResNet18
from deepatlas.models.train import TrainResult, evaluate, train_model

__all__ = [
    "ARCHITECTURES",
    "MLP",
    "Checkpoint",
    "FashionCNN",
    "ResNet18",
    "TrainResult",
    "build_model",
    "evaluate",
    "load_checkpoint",
    "load_model",
    "reload_model",
    "save_checkpoint",
    "train_model",
]
