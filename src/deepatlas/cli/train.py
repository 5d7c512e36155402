"""`deepatlas train`: the reference CNN on Fashion-MNIST."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepatlas.cli._common import (
    DataDirOpt,
    DeviceOpt,
    JsonOpt,
    cli_errors,
    console,
    print_json,
    progress_bars,
)
from deepatlas.errors import UsageError
from deepatlas.paths import models_dir
from deepatlas.workspace import DataSource, Workspace


@cli_errors
def train(
    out: Annotated[Path | None, typer.Option(help="Checkpoint path. Default: $DEEPATLAS_HOME/models/fashion-cnn.pt")] = None,
    epochs: Annotated[int, typer.Option(min=1, max=200, help="Passes over the 60,000 training images.")] = 6,
    seed: Annotated[int, typer.Option(help="Seeds weights and shuffling: same seed, same model (CPU).")] = 0,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    fraction: Annotated[float, typer.Option(help="Train on this seeded random fraction of the training images.")] = 1.0,
    classes: Annotated[str | None, typer.Option(help="Train only on these class indices, e.g. 0,1,2,3,4.")] = None,
    arch: Annotated[str, typer.Option(help="fashion_cnn (the reference CNN) or resnet18 (torchvision's ResNet-18 "
                                      "adapted to 28x28 grey images; ~8 min per epoch on 2 CPU cores).")] = "fashion_cnn",
    limit: Annotated[int | None, typer.Option(min=1, help="Train on the first N training images only.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Train the reference CNN (3 conv + 2 dense), or --arch resnet18, on Fashion-MNIST and save a checkpoint.

    The checkpoint records the architecture, class names, input shape, normalisation, test
    accuracy and a sha256 of the weights. About a minute on two CPU cores for ~91% accuracy.
    """
    from deepatlas.workflows.build import train_reference
    path = out or models_dir() / f"{arch.replace('_', '-')}.pt"
    try:
        class_list = [int(c) for c in classes.split(",") if c.strip()] if classes else None
    except ValueError:
        raise UsageError(f"--classes takes comma-separated class indices, got {classes!r}") from None
    ws = Workspace(data=DataSource(data_dir=data_dir), device=device)
    with progress_bars(not json_out) as ws.progress:
        report = train_reference(ws, path, epochs=epochs, seed=seed, fraction=fraction, classes=class_list, arch=arch,
                                 train_limit=limit)
    if json_out:
        print_json(report.to_json())
        return
    console.print(f"test accuracy [bold]{report.test_accuracy:.2%}[/] after {report.epochs} epochs "
                  f"in {report.train_seconds:.0f} s")
    console.print(f"checkpoint {report.checkpoint}  (sha256 {report.sha256[:16]}...)")
