"""Workflows the CLI (and scripts) call: one function per user-level job.

This is the only module above both ``ingest`` and ``db``; it wires data, model, statistics
and the writer together, and reports what happened. It never prints: progress goes through
the ``progress(stage, advance, total)`` callback.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from deepatlas import workspace
from deepatlas.data.base import ImageSet
from deepatlas.data.formats import load_dataset
from deepatlas.db.graph import Graph
from deepatlas.db.runs import (
    RunInfo,
    find_run,
    new_run_key,
    remember_run,
    validate_run_name,
)
from deepatlas.db.writers import run_writer
from deepatlas.errors import UsageError
from deepatlas.explain.aggregate import (
    class_gradient_scores,
    class_influence_scores,
    layer_influence,
)
from deepatlas.ingest.coactivation import MAX_MATRIX_MB, compute_coactivation
from deepatlas.ingest.tables import SparsifyParams, attribution_tables, build_tables, params_dict
from deepatlas.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from deepatlas.models.loading import complete_metadata, model_props
from deepatlas.models.reference import build_model
from deepatlas.models.train import evaluate, train_model
from deepatlas.workspace import Result, Workspace, no_progress, pick_device

__all__ = ["EDGE_KINDS", "IngestReport", "TrainReport", "ingest", "pick_device", "train_reference"]

#: What `--edges` accepts. Co-activation statistics (node properties, confusion) are always
#: computed; the names choose which edges are written.
EDGE_KINDS = ("coactivation", "influence", "gradient")

Progress = workspace.Progress
_noop = no_progress  # the old names, kept for the bench and older scripts


@dataclass
class TrainReport(Result):
    """The checkpoint written, its test accuracy and what it took."""

    checkpoint: Path
    test_accuracy: float
    train_seconds: float
    epochs: int
    seed: int
    sha256: str


def train_reference(
    ws: Workspace,
    out: str | Path,
    *,
    epochs: int = 6,
    seed: int = 0,
    train_limit: int | None = None,
    fraction: float = 1.0,
    classes: Sequence[int] | None = None,
    widths: tuple[int, int, int] = (16, 32, 64),
    hidden: int = 128,
    arch: str = "fashion_cnn",
) -> TrainReport:
    """Train a registered architecture on Fashion-MNIST and save a checkpoint with its metadata.

    ``arch``: "fashion_cnn" (the reference CNN, sized by ``widths`` and ``hidden``) or
    "resnet18" (:class:`deepatlas.models.resnet.ResNet18`; ``widths``/``hidden`` unused).
    Deterministic for a seed on a given machine and torch build (CPU). The Workspace gives the
    device, the progress callback and ``ws.data.data_dir`` (where the Fashion-MNIST files are).
    """
    dev, progress, data_dir = ws.device, ws.progress, ws.data.data_dir
    train = load_dataset("fashion-mnist", "train", data_dir=data_dir)
    test = load_dataset("fashion-mnist", "test", data_dir=data_dir)
    if train_limit is not None:
        train = train.subset(train_limit)
    if not 0.0 < fraction <= 1.0:
        raise UsageError(f"fraction must lie in (0, 1], got {fraction}")
    if classes is not None:
        bad = [c for c in classes if not 0 <= c < len(train.class_names)]
        if bad or not classes:
            raise UsageError(f"classes must be indices 0..{len(train.class_names) - 1}, got {list(classes)}")
        keep = torch.isin(train.labels, torch.tensor(list(classes)))
        train = ImageSet(train.images[keep], train.labels[keep], train.class_names, train.name, train.split)
    if fraction < 1.0:
        # a seeded random fraction of the training images (the factorisation paper's diagnostic)
        idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[: max(1, int(fraction * len(train)))]
        idx = idx.sort().values
        train = ImageSet(train.images[idx], train.labels[idx], train.class_names, train.name, train.split)
    mean, std = float(train.images.mean()), float(train.images.std())
    torch.manual_seed(seed)
    config: dict[str, Any]
    if arch == "fashion_cnn":
        config = {"in_channels": 1, "n_classes": 10, "widths": list(widths), "hidden": hidden, "input_size": 28}
    elif arch == "resnet18":
        config = {"in_channels": 1, "n_classes": 10}
    else:
        raise UsageError(f"unknown architecture {arch!r}; train knows fashion_cnn and resnet18")
    model = build_model(arch, config)
    steps = (len(train) + 127) // 128
    result = train_model(
        model, train, epochs=epochs, seed=seed, mean=mean, std=std, device=dev,
        progress=lambda e, s, n, loss: progress("train", 1, epochs * steps),
    )
    acc = evaluate(model, test, mean=mean, std=std, device=dev)
    model.cpu()
    path = save_checkpoint(out, model, arch, config, {
        "name": arch.replace("_", "-"), "class_names": list(train.class_names), "input_shape": list(train.input_shape),
        "mean": mean, "std": std, "accuracy": acc, "dataset": "fashion-mnist", "seed": seed, "epochs": epochs,
        "train_images": len(train), "train_seconds": result.seconds, "device": str(dev),
        "train_fraction": fraction, "train_classes": list(classes) if classes is not None else None,
        "torch": torch.__version__,
    })
    ckpt = load_checkpoint(path)
    return TrainReport(path, acc, result.seconds, epochs, seed, ckpt.sha256)


@dataclass
class IngestReport(Result):
    """The run written, its node and edge counts, and where the time went."""

    run: RunInfo
    nodes: dict[str, int]
    edges: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)
    accuracy: float = 0.0
    device: str = "cpu"

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run.name, "key": self.run.key, "accuracy": self.accuracy, "device": self.device,
                "nodes": self.nodes, "edges": self.edges, "seconds": self.seconds}


def _default_run_name(ckpt: Checkpoint, data: ImageSet) -> str:
    """``{weights file stem}-{data}-{split}`` (``{model name}-...`` when there is no file), so
    two checkpoints of one architecture get two runs."""
    stem = ckpt.path.stem if ckpt.path is not None else ckpt.name
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"{stem}-{data.name}-{data.split}")[:100]


def _check_replacement(graph: Graph, name: str, ckpt: Checkpoint, data: ImageSet) -> None:
    """A run of this name from other weights or other data is only replaced when asked."""
    old = find_run(graph, name)
    if old is None:
        return
    same = (old.model == ckpt.sha256 and (old.dataset, old.split, old.n_samples) == (data.name, data.split, len(data)))
    if not same:
        what = f"{old.n_samples} images of {old.dataset}/{old.split} from weights {str(old.model)[:12]}"
        raise UsageError(f"run {name!r} already holds {what}; pass --replace to replace it, or choose another --run")


def ingest(
    ws: Workspace,
    *,
    layers: Sequence[str] | None = None,
    batch_size: int = 500,
    sparsify: SparsifyParams | None = None,
    class_values: str = "probs",
    edges: Sequence[str] = EDGE_KINDS,
    attribution_per_class: int = 100,
    between_samples: int = 200,
    max_matrix_mb: float | None = MAX_MATRIX_MB,
    bulk: bool = False,
    pixel_grid: str | tuple[int, int] = "auto",
    amp: bool = False,
    replace: bool = False,
) -> IngestReport:
    """Model + data -> a complete Run in Neo4j (the co-activation graph).

    Parameters
    ----------
    ws : Workspace
        ``ws.model``: the model (a deepatlas checkpoint, ``torchvision:NAME`` ..., or a loaded
        Checkpoint; missing input shape and class names are taken from the data set).
        ``ws.data``: the images (a ``--data`` spec, split and limit, see
        :func:`deepatlas.data.formats.load_data`, fitted to the model's input shape; or a loaded
        ImageSet). ``ws.run``: the run's name, default ``{weights file stem}-{dataset}-{split}``;
        an existing complete run of that name from the same weights and data is replaced
        atomically, one from other weights or data only with ``replace``. ``ws.graph``,
        ``ws.device`` and ``ws.progress`` as usual.
    layers : sequence of str, optional
        Module names to capture; default every conv/dense layer's post-activation output.
    batch_size, class_values : see :func:`deepatlas.ingest.compute_coactivation`
    sparsify : SparsifyParams, optional
    edges : sequence of {"coactivation", "influence", "gradient"}, default all three
        COACTIVATES (Pearson r), INFLUENCES (influential scores, neuron->class and between
        consecutive captured layers) and GRADIENT (prediction gradients, neuron->class).
    attribution_per_class : int, default 100
        Images per class averaged for the INFLUENCES and GRADIENT neuron->class edges.
    between_samples : int, default 200
        Images averaged for the neuron->neuron INFLUENCES edges (on by default for every
        architecture, ResNets included: consecutive captured layers cost about one backward
        pass per batch, see :meth:`deepatlas.explain.influence.InfluentialScores.between`);
        0 writes no neuron->neuron INFLUENCES (the neuron->class ones still are);
        ``sparsify.influence_top_k`` keeps only each upper unit's strongest lower units.
    max_matrix_mb : float, default 512
        Memory budget of the unit-unit co-moment matrix; beyond it co-activation goes
        blockwise, one pass over the data per block of rows (see
        :mod:`deepatlas.ingest.coactivation`).
    bulk : bool, default False
        Write through neo4j-admin's CSV import instead of Bolt: only into an EMPTY managed local
        database (the server is stopped for the import and started again).
    pixel_grid : "auto", "off" or (rows, cols), default "auto"
        Pixel nodes: see :func:`deepatlas.ingest.coactivation.pixel_shape`.
    amp : bool, default False
        Mixed precision for the co-activation forward pass (statistics stay in float64).
    replace : bool, default False
        Replace a complete run of the same name that came from other weights or other data
        (the same weights on the same data are always re-ingested in place).

    Returns
    -------
    IngestReport
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ckpt, images, progress = ws.checkpoint(), ws.images(), ws.progress
    complete_metadata(ckpt, images.input_shape, images.class_names, images.name)
    expected = tuple(ckpt.meta.get("input_shape", images.input_shape))
    if images.input_shape != expected:
        raise UsageError(f"the model expects images of shape {expected}, {images.name} has {images.input_shape}")
    if len(ckpt.class_names) != len(images.class_names):
        raise UsageError(f"the model has {len(ckpt.class_names)} classes, {images.name} has {len(images.class_names)}")
    name = validate_run_name(ws.run if ws.run is not None else _default_run_name(ckpt, images))
    unknown = [e for e in edges if e not in EDGE_KINDS]
    if unknown or not edges:
        raise UsageError(f"--edges takes a comma-separated subset of {', '.join(EDGE_KINDS)}; got {', '.join(edges) or 'nothing'}")
    if attribution_per_class <= 0 or between_samples < 0:
        raise UsageError("attribution_per_class must be positive and between_samples not negative")
    sparsify = sparsify or SparsifyParams()
    dev = ws.device
    timings["load"] = time.perf_counter() - t0

    g = ws.graph
    if not replace:  # refuse before computing anything
        _check_replacement(g, name, ckpt, images)
    writer = run_writer(bulk)
    writer.check(g)  # e.g. --bulk needs an empty database: refused before any work
    n = len(images)
    result = compute_coactivation(
        ckpt.model, images, layers=layers, batch_size=batch_size, device=dev, normalize=ckpt.normalize,
        class_values=class_values, max_matrix_mb=max_matrix_mb, sparsify=sparsify,
        progress=lambda k, total: progress("capture", k, total), pixel_grid=pixel_grid, amp=amp,
    )
    ckpt.model.cpu()
    timings["capture+stats"] = result.seconds.get("forward+stats", 0.0) + result.seconds.get("setup", 0.0)
    if result.passes > 1:
        timings["blockwise passes"] = result.seconds.get("more passes", 0.0)
    timings["correlate"] = result.seconds.get("correlate", 0.0)
    t0 = time.perf_counter()
    key = new_run_key(name)
    tables = build_tables(result, key, sparsify)
    if "coactivation" not in edges:
        tables.edges = [t for t in tables.edges if t.rel != "COACTIVATES"]
    timings["tables"] = time.perf_counter() - t0
    layer_names = [s.name for s in result.layers]
    kinds = {s.name: s.kind for s in result.layers}  # a token layer's units are its features
    per_class_total = sum(min(attribution_per_class, int((images.labels == c).sum())) for c in range(len(images.class_names)))
    grad = infl = betw = None
    if "gradient" in edges:
        t0 = time.perf_counter()
        grad = class_gradient_scores(ckpt.model, images, layer_names, normalize=ckpt.normalize,
                                     per_class=attribution_per_class, device=dev, kinds=kinds,
                                     progress=lambda k: progress("gradient", k, per_class_total))
        timings["gradient"] = time.perf_counter() - t0
    if "influence" in edges:
        t0 = time.perf_counter()
        infl = class_influence_scores(ckpt.model, images, layer_names, normalize=ckpt.normalize,
                                      per_class=attribution_per_class, device=dev, kinds=kinds,
                                      progress=lambda k: progress("influence", k, per_class_total))
        if between_samples > 0:
            n_sweeps = sum(s.size for s in result.layers[1:]) * max(1, -(-min(between_samples, len(images)) // 100))
            betw = layer_influence(ckpt.model, images, layer_names, normalize=ckpt.normalize,
                                   samples=between_samples, device=dev,
                                   progress=lambda k: progress("between", k, n_sweeps))
        timings["influence"] = time.perf_counter() - t0
    tables.edges += attribution_tables(key, result, gradient=grad, influence=infl, between=betw,
                                       influence_top_k=sparsify.influence_top_k)
    total_rows = sum(tables.node_counts().values()) + sum(len(t) for t in tables.edges)
    t0 = time.perf_counter()
    run_props = {
            "dataset": images.source or images.name, "split": images.split, "n_samples": n, "accuracy": result.accuracy,
            "layers": [s.name for s in result.layers], "class_values": class_values,
            "input_shape": list(result.input_shape), "pixel_shape": list(result.pixel_shape),
            "params": {**params_dict(sparsify), "batch_size": batch_size, "class_values": class_values,
                       "layers": [s.name for s in result.layers], "edges": list(edges),
                       "attribution_per_class": attribution_per_class, "between_samples": between_samples,
                       "gradient_output": "logit"},
            "confusion": result.confusion.tolist(), "device": str(dev),
        }
    model_node = model_props(ckpt)
    run = writer.write(g, tables, key=key, name=name, run_props=run_props, model_props=model_node,
                       progress=lambda k: progress("write", k, total_rows))
    if "clean-up" in writer.timings:  # deleting earlier generations of the name
        timings["clean-up"] = writer.timings["clean-up"]
    timings["write"] = time.perf_counter() - t0 - timings.get("clean-up", 0.0)
    remember_run(g, name)  # commands without --run now default to this run
    return IngestReport(run, tables.node_counts(), tables.edge_counts(), timings, result.accuracy, str(dev))
