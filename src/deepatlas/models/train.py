"""Deterministic training and evaluation of classifiers on an :class:`ImageSet`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from deepatlas.data.base import ImageSet
from deepatlas.errors import UsageError

__all__ = ["TrainResult", "evaluate", "pixel_mean_std", "train_model"]

#: Called after every batch with (epoch, batches done in epoch, batches per epoch, loss).
ProgressFn = Callable[[int, int, int, float], None]


@dataclass(frozen=True)
class TrainResult:
    """What a training run reached."""

    epochs: int
    seconds: float
    final_loss: float
    train_accuracy: float


def train_model(
    model: nn.Module,
    data: ImageSet,
    *,
    epochs: int = 4,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    mean: float = 0.0,
    std: float = 1.0,
    device: str | torch.device = "cpu",
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train ``model`` in place with Adam and cross-entropy; deterministic for a seed.

    Parameters
    ----------
    model : nn.Module
        Returns logits.
    data : ImageSet
    epochs : int, default 4
    batch_size : int, default 128
    lr : float, default 2e-3
        Adam's learning rate, decayed linearly to 10% over the run.
    seed : int, default 0
        Seeds the weight init (if the caller built the model after ``torch.manual_seed``), the
        shuffling and dropout.
    mean, std : float
        Normalisation applied to the [0, 1] images.
    device : str or torch.device, default "cpu"
    progress : callable, optional

    Returns
    -------
    TrainResult
    """
    if epochs <= 0 or batch_size <= 0 or lr <= 0:
        raise UsageError("epochs, batch_size and lr must be positive")
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(data)
    steps = (n + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.1, total_iters=max(1, epochs * steps))
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    loss_value = float("nan")
    correct = 0
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        correct = 0
        shuffled = data.subset(positions=order)  # a view: the images are read batch by batch
        for step, batch in enumerate(shuffled.batches(batch_size, device=device)):
            x = (batch.images - mean) / std
            y = batch.labels
            opt.zero_grad(set_to_none=True)
            logits = model(x)
            loss = loss_fn(logits, y)
            loss.backward()
            opt.step()
            sched.step()
            correct += int((logits.argmax(1) == y).sum())
            if progress is not None:
                loss_value = float(loss.detach())
                progress(epoch, step + 1, steps, loss_value)
        loss_value = float(loss.detach())
    model.eval()
    return TrainResult(epochs, time.perf_counter() - start, loss_value, correct / n)


@torch.no_grad()
def pixel_mean_std(data: ImageSet, batch_size: int = 4096) -> tuple[float, float]:
    """Mean and (sample) standard deviation of every pixel of ``data`` in [0, 1], streamed."""
    total = squares = 0.0
    count = 0
    for batch in data.batches(batch_size):
        x = batch.images.to(torch.float64)
        total += float(x.sum())
        squares += float((x * x).sum())
        count += x.numel()
    if count < 2:
        raise UsageError("the training set needs at least 2 pixels")
    mean = total / count
    return float(mean), float(max(0.0, (squares - count * mean * mean) / (count - 1)) ** 0.5)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: ImageSet,
    *,
    mean: float = 0.0,
    std: float = 1.0,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> float:
    """Top-1 accuracy of ``model`` on ``data``."""
    device = torch.device(device)
    model.to(device).eval()
    correct = 0
    for batch in data.batches(batch_size, device=device):
        correct += int((model((batch.images - mean) / std).argmax(1) == batch.labels).sum())
    return correct / max(1, len(data))
