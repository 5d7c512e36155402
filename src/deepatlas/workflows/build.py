"""Workflows the CLI (and scripts) call: one function per user-level job.

This is the only module above both ``ingest`` and ``db``; it wires data, model, statistics
and the writer together, and reports what happened. It never prints: progress goes through
the ``progress(stage, advance, total)`` callback.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
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
    last_run,
    new_run_key,
    remember_run,
    validate_run_name,
)
from deepatlas.db.writers import run_writer
from deepatlas.errors import DeepAtlasError, UsageError
from deepatlas.explain.aggregate import (
    between_subset,
    between_sweeps,
    class_gradient_scores,
    class_influence_scores,
    layer_influence,
)
from deepatlas.ingest.coactivation import auto_batch_size, compute_coactivation
from deepatlas.ingest.tables import (
    AttributionCounts,
    SparsifyParams,
    attribution_tables,
    build_tables,
    class_edges_per_class,
    params_dict,
)
from deepatlas.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from deepatlas.models.loading import complete_metadata, model_props
from deepatlas.models.reference import build_model
from deepatlas.models.train import evaluate, pixel_mean_std, train_model
from deepatlas.workspace import Result, Workspace, no_progress, pick_device

log = logging.getLogger(__name__)

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
        train = train.subset(positions=torch.nonzero(keep).flatten())
    if fraction < 1.0:
        # a seeded random fraction of the training images (the factorisation paper's diagnostic)
        idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[: max(1, int(fraction * len(train)))]
        train = train.subset(positions=idx.sort().values)
    mean, std = pixel_mean_std(train)
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
    """The run written, its node and edge counts, where the time and the memory went, how many
    pairs passed each filter, and what was skipped (with the flag that gets it)."""

    run: RunInfo
    nodes: dict[str, int]
    edges: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)
    accuracy: float = 0.0
    device: str = "cpu"
    memory_mb: dict[str, float] = field(default_factory=dict)
    pairs: dict[str, Any] = field(default_factory=dict)
    attribution: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    batch_size: int = 0
    processes: int = 1
    resumed: bool = False
    class_names: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    default_run: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run.name, "key": self.run.key, "accuracy": self.accuracy, "device": self.device,
                "nodes": self.nodes, "edges": self.edges, "seconds": self.seconds, "memory_mb": self.memory_mb,
                "pairs": self.pairs, "attribution": self.attribution, "skipped": self.skipped,
                "batch_size": self.batch_size, "processes": self.processes, "resumed": self.resumed,
                "class_names": self.class_names, "warnings": self.warnings, "default_run": self.default_run}


def _move_default(ws: Workspace, run: RunInfo, current: str | None) -> str | None:
    """Make the run just written the one commands without ``--run`` use, unless the default
    before it (``current``) is a complete run of the same model over more images of the same
    data: a quick look at 2,000 images (``--limit``, fewer layers) must not move the analysis of
    the full run onto it. Returns the default run afterwards."""
    before = find_run(ws.graph, current) if current not in (None, run.name) else None
    if (before is not None and before.model == run.model and before.dataset == run.dataset
            and before.split == run.split and (before.n_samples or 0) > (run.n_samples or 0)):
        log.warning("commands without --run keep using run %s (%s images); run %s covers %s (pass --run %s)",
                    before.name, f"{before.n_samples:,}", run.name, f"{run.n_samples or 0:,}", run.name)
        return before.name
    remember_run(ws.graph, run.name)
    return run.name


def _near_chance(accuracy: float, n_classes: int) -> str | None:
    """A warning when the model's accuracy on the data is within 1.5x of guessing."""
    if n_classes < 2 or accuracy > 1.5 / n_classes:
        return None
    return (f"accuracy {accuracy:.1%} is near chance (1/{n_classes} = {1 / n_classes:.1%}): are these the weights trained "
            "on this data (same classes in the same order, same input shape)? The edges describe this model as it is")


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
    same = (old.model == ckpt.sha256 and (old.dataset, old.split, old.n_samples) == (data.source or data.name, data.split, len(data)))
    if not same:
        what = f"{old.n_samples} images of {old.dataset}/{old.split} from weights {str(old.model)[:12]}"
        raise UsageError(f"run {name!r} already holds {what}; pass --replace to replace it, or choose another --run")


#: Memory for everything an ingest holds besides the model's own forward pass (MB): the
#: co-moments get a quarter (``max_matrix_mb``), a blockwise pass's node values half
#: (``cache_mb``; beyond it they go to a file), the rest covers the pair selection, the edge
#: arrays and the attribution sums, which the caps of :mod:`deepatlas.ingest.pairs` bound.
MEMORY_MB = 2048.0

#: Neuron->neuron influence is computed by default only when it costs at most this many
#: backward sweeps (a pair with one weighted layer between costs one sweep per batch; other
#: pairs one per upper unit and batch).
BETWEEN_SWEEPS = 1_000


def ingest(
    ws: Workspace,
    *,
    layers: Sequence[str] | None = None,
    batch_size: int | None = None,
    sparsify: SparsifyParams | None = None,
    class_values: str = "probs",
    correlation: str = "pearson",
    edges: Sequence[str] | None = None,
    attribution_per_class: int = 100,
    between_samples: int | None = None,
    memory_mb: float = MEMORY_MB,
    max_matrix_mb: float | None = None,
    bulk: bool = False,
    pixel_grid: str | tuple[int, int] = "auto",
    amp: bool = False,
    replace: bool = False,
    workers: int | None = None,
    resume: bool = False,
    restart: bool = False,
) -> IngestReport:
    """Model + data -> a complete Run in Neo4j (the co-activation graph).

    Parameters
    ----------
    ws : Workspace
        ``ws.model``: the model (a deepatlas checkpoint, ``torchvision:NAME`` ..., or a loaded
        Checkpoint; missing input shape and class names are taken from the data set).
        ``ws.data``: the images (a ``--data`` spec, split and limit, see
        :func:`deepatlas.data.formats.load_data`, read in batches at the model's input shape;
        or a loaded ImageSet). ``ws.run``: the run's name, default
        ``{weights file stem}-{dataset}-{split}``; an existing complete run of that name from
        the same weights and data is replaced atomically, one from other weights or data only
        with ``replace``. ``ws.graph``, ``ws.device`` and ``ws.progress`` as usual.
    layers : sequence of str, optional
        Sites or modules to capture; default the model's blocks and the post-activation output
        of each conv/dense layer outside them (:func:`deepatlas.ingest.capture.default_layers`).
    batch_size : int, optional
        Images per forward pass; default from the model's size (:func:`auto_batch_size`).
    class_values : see :func:`deepatlas.ingest.compute_coactivation`
    correlation : {"pearson", "spearman"}, default "pearson"
        The COACTIVATES and pixel edges' r: Pearson (the paper's) or Spearman's rho (one more
        pass over the data; exact up to 2,048 images, beyond with the bound the report gives:
        :mod:`deepatlas.ingest.ranks`). Stored on the Run as ``correlation``.
    sparsify : SparsifyParams, optional
        The edge rules and caps (:mod:`deepatlas.ingest.pairs`).
    edges : sequence of {"coactivation", "influence", "gradient"}, optional
        COACTIVATES (Pearson r), INFLUENCES (influential scores, neuron->class and between
        consecutive captured layers) and GRADIENT (prediction gradients, neuron->class).
        Default: all three, less INFLUENCES on a model the influence rules do not cover (a
        vision transformer's attention), which the report's ``skipped`` then says.
    attribution_per_class : int, default 100
        Images per class averaged for the INFLUENCES and GRADIENT neuron->class edges.
    between_samples : int, optional
        Images averaged for the neuron->neuron INFLUENCES edges. Default: 200 when that costs
        at most :data:`BETWEEN_SWEEPS` backward sweeps (every pair of the reference CNN), else
        none, and the report says so (ResNet blocks: one sweep per upper unit); 0: none.
    memory_mb : float, default :data:`MEMORY_MB`
        The budget for everything but the model's forward pass (see :data:`MEMORY_MB`).
    max_matrix_mb : float, optional
        The co-moments' share (default a quarter of ``memory_mb``); beyond it co-activation goes
        blockwise (:mod:`deepatlas.ingest.coactivation`).
    bulk : bool, default False
        Write through neo4j-admin's CSV import instead of Bolt: only into an EMPTY managed local
        database (the server is stopped for the import and started again).
    pixel_grid : "auto", "off" or (rows, cols), default "auto"
        Pixel nodes: see :func:`deepatlas.ingest.coactivation.pixel_shape`.
    amp : bool, default False
        Mixed precision for the co-activation forward pass (statistics stay in float64).
    replace : bool, default False
        Replace a complete run of the same name that came from other weights or other data.
    workers : int, optional
        DataLoader worker processes decoding images (default from the CPU count).
    resume, restart : bool, default False
        Continue a killed ingest of this run from its checkpoints, or discard them
        (:class:`deepatlas.ingest.resume.ResumeState`).

    Under ``torchrun`` every process runs this function on its share of the images; only rank
    0 reads and writes the graph (:mod:`deepatlas.ingest.distributed`).

    Returns
    -------
    IngestReport
    """
    from deepatlas.ingest.distributed import from_env
    from deepatlas.ingest.resume import ResumeState
    from deepatlas.memory import StageMeter
    from deepatlas.models.sites import output_bytes

    meter = StageMeter()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    asked = edges is not None
    edges = list(EDGE_KINDS) if edges is None else list(edges)
    unknown = [e for e in edges if e not in EDGE_KINDS]
    if unknown or not edges:
        raise UsageError(f"--edges takes a comma-separated subset of {', '.join(EDGE_KINDS)}; got {', '.join(edges) or 'nothing'}")
    if attribution_per_class <= 0 or (between_samples is not None and between_samples < 0):
        raise UsageError("attribution_per_class must be positive and between_samples not negative")
    if memory_mb <= 0:
        raise UsageError(f"memory_mb must be positive, got {memory_mb}")
    sparsify = sparsify or SparsifyParams()
    with meter.stage("load"):
        ckpt, images, progress = ws.checkpoint(), ws.images(), ws.progress
        complete_metadata(ckpt, images.input_shape, images.class_names, images.name)
        expected = tuple(ckpt.meta.get("input_shape", images.input_shape))
        if images.input_shape != expected:
            raise UsageError(f"the model expects images of shape {expected}, {images.name} has {images.input_shape}")
        if len(ckpt.class_names) != len(images.class_names):
            raise UsageError(f"the model has {len(ckpt.class_names)} classes, {images.name} has {len(images.class_names)}")
        if images.fit_note():
            log.warning("%s", images.fit_note())
        name = validate_run_name(ws.run if ws.run is not None else _default_run_name(ckpt, images))
        dev = ws.device
        dist = from_env(dev)
        if dist.world > 1 and dev.type == "cuda":
            dev = torch.device("cuda", torch.cuda.current_device())
    timings["load"] = time.perf_counter() - t0
    matrix_mb = max_matrix_mb if max_matrix_mb is not None else memory_mb / 4

    writer = run_writer(bulk)
    problem = None
    previous_default: str | None = None
    if dist.main:
        try:
            g = ws.graph
            previous_default = last_run(g)
            if not replace:  # refuse before computing anything
                _check_replacement(g, name, ckpt, images)
            writer.check(g)  # e.g. --bulk needs an empty database: refused before any work
        except DeepAtlasError as exc:
            problem = exc
    dist.agree(problem)
    if dev.type == "cpu":
        _check_fits(ckpt, images, layers, memory_mb=memory_mb, max_matrix_mb=matrix_mb, sparsify=sparsify,
                    pixel_grid=pixel_grid, batch_size=batch_size, edges=tuple(edges),
                    attribution_per_class=attribution_per_class, correlation=correlation)
    fingerprint = {"model": ckpt.sha256, "data": images.source or images.name, "split": images.split, "images": len(images),
                   "layers": list(layers) if layers else None, "class_values": class_values, "correlation": correlation,
                   "sparsify": params_dict(sparsify),
                   "pixel_grid": list(pixel_grid) if isinstance(pixel_grid, tuple) else pixel_grid, "max_matrix_mb": matrix_mb,
                   "edges": sorted(edges), "attribution_per_class": attribution_per_class,
                   "between_samples": between_samples, "processes": dist.world}
    state = _open_state(name, fingerprint, resume, restart, dist, ResumeState)

    result = compute_coactivation(
        ckpt.model, images, layers=layers, batch_size=batch_size, device=dev, normalize=ckpt.normalize,
        class_values=class_values, max_matrix_mb=matrix_mb, sparsify=sparsify, cache_mb=memory_mb / 2,
        progress=lambda k, total: progress("capture", k, total) if dist.main else None, pixel_grid=pixel_grid, amp=amp,
        workers=workers, dist=dist, state=state, meter=meter, correlation=correlation,
    )
    timings.update(result.seconds)  # setup, forward+stats, more passes (blockwise), correlate+select
    key = new_run_key(name)
    t0 = time.perf_counter()
    with meter.stage("tables"):
        tables = build_tables(result, key, sparsify)
        result.units = dataclasses.replace(result.units, r=None)  # the pairs are chosen: r is no longer needed
        if "coactivation" not in edges:
            tables.edges = [t for t in tables.edges if t.rel != "COACTIVATES"]
    timings["tables"] = time.perf_counter() - t0

    layer_names = [s.name for s in result.layers]
    kinds = {s.name: s.kind for s in result.layers}  # a token layer's units are its features
    example = ckpt.normalize(images.take([0]).to(dev))
    back_batch = auto_batch_size(output_bytes(ckpt.model, example), dev, factor=4.0, most=200)
    skipped: list[str] = []
    if not asked and "influence" in edges:
        reason = _influence_refused(ckpt.model, example)
        if reason is not None:
            edges.remove("influence")
            skipped.append(f"INFLUENCES: {reason}")
    all_reduce = dist.all_reduce_ if dist.world > 1 else None
    per_class_total = sum(min(attribution_per_class, n) for n in images.class_counts())
    grad = infl = betw = None
    if "gradient" in edges:
        t0 = time.perf_counter()
        with meter.stage("gradient"):
            grad = _per_class_stage(state, "gradient", len(images.class_names), lambda classes: class_gradient_scores(
                ckpt.model, images, layer_names, normalize=ckpt.normalize, per_class=attribution_per_class, device=dev,
                kinds=kinds, batch_size=back_batch, classes=classes, shard=dist.shard, all_reduce=all_reduce,
                progress=lambda k: progress("gradient", k * dist.world, per_class_total) if dist.main else None))
        timings["gradient"] = time.perf_counter() - t0
    if "influence" in edges:
        t0 = time.perf_counter()
        with meter.stage("influence"):
            infl = _per_class_stage(state, "influence", len(images.class_names), lambda classes: class_influence_scores(
                ckpt.model, images, layer_names, normalize=ckpt.normalize, per_class=attribution_per_class, device=dev,
                kinds=kinds, batch_size=back_batch, classes=classes, shard=dist.shard, all_reduce=all_reduce,
                progress=lambda k: progress("influence", k * dist.world, per_class_total) if dist.main else None))
        timings["influence"] = time.perf_counter() - t0
        samples = between_samples
        if len(layer_names) > 1 and samples != 0:
            with meter.stage("between"):
                want = 200 if samples is None else samples
                n_between = len(between_subset(images, want))
                per_batch = between_sweeps(ckpt.model, example, layer_names, [s.size for s in result.layers])
                sweeps = per_batch * max(1, -(-n_between // min(back_batch, 100)))
                if samples is None and sweeps > BETWEEN_SWEEPS:
                    skipped.append(f"neuron->neuron INFLUENCES: {sweeps:,} backward sweeps (one per unit of each upper layer "
                                   f"and batch, {n_between} images); pass --between-samples {want} to compute them")
                else:
                    t0 = time.perf_counter()
                    betw = _between_stage(state, layer_names, lambda pair: layer_influence(
                        ckpt.model, images, pair, normalize=ckpt.normalize, samples=want, device=dev,
                        batch_size=min(back_batch, 100), shard=dist.shard, all_reduce=all_reduce),
                        progress=lambda k: progress("between", k, len(layer_names) - 1) if dist.main else None)
                    timings["between"] = time.perf_counter() - t0
    counts = AttributionCounts()
    with meter.stage("tables"):
        tables.edges += attribution_tables(key, result, gradient=grad, influence=infl, between=betw,
                                           influence_top_k=sparsify.influence_top_k,
                                           per_class=class_edges_per_class(sparsify, result), counts=counts)
    ckpt.model.cpu()
    pairs = result.pairs
    pair_counts = dataclasses.asdict(pairs.counts) if pairs is not None else {}
    pair_counts["correlation"] = result.correlation
    if result.correlation == "spearman":
        pair_counts.update(rank_bins=result.rank_bins, rank_error_bound=result.rank_error_bound)
    attribution = {"gradient": {"stored": counts.gradient[0], "pairs": counts.gradient[1]},
                   "influence_class": {"stored": counts.influence_class[0], "pairs": counts.influence_class[1]},
                   "influence_between": {"stored": counts.influence_between[0], "pairs": counts.influence_between[1],
                                         "share_of_influence_kept": round(counts.between_mass_kept, 4)}}
    run_props = {
        "dataset": images.source or images.name, "split": images.split, "n_samples": result.n_samples,
        "accuracy": result.accuracy, "layers": layer_names, "class_values": class_values,
        "correlation": result.correlation,
        "input_shape": list(result.input_shape), "pixel_shape": list(result.pixel_shape),
        "params": {**params_dict(sparsify), "batch_size": result.batch_size, "class_values": class_values,
                   "layers": layer_names, "edges": list(edges), "attribution_per_class": attribution_per_class,
                   "between_samples": 0 if betw is None else (200 if between_samples is None else between_samples),
                   "gradient_output": "logit", "noise_floor": pairs.counts.floor if pairs is not None else 0.0,
                   "processes": dist.world, "correlation": result.correlation,
                   **({"rank_bins": result.rank_bins, "rank_error_bound": result.rank_error_bound}
                      if result.correlation == "spearman" else {})},
        "confusion": result.confusion.tolist(), "device": str(dev),
    }
    run: RunInfo | None = None
    default_run: str | None = None
    if dist.main:
        total_rows = sum(tables.node_counts().values()) + sum(len(t) for t in tables.edges)
        t0 = time.perf_counter()
        with meter.stage("write"):
            run = writer.write(ws.graph, tables, key=key, name=name, run_props=run_props, model_props=model_props(ckpt),
                               progress=lambda k: progress("write", k, total_rows))
        if "clean-up" in writer.timings:  # deleting earlier generations of the name
            timings["clean-up"] = writer.timings["clean-up"]
        timings["write"] = time.perf_counter() - t0 - timings.get("clean-up", 0.0)
        default_run = _move_default(ws, run, previous_default)
    dist.barrier()
    if state is not None:
        state.finish()
    if run is None:  # another process of a torchrun job: rank 0 wrote the run
        run = RunInfo(key=key, name=name, status="complete", model=ckpt.sha256, dataset=images.source or images.name,
                      split=images.split, n_samples=result.n_samples, accuracy=result.accuracy, created_at=None,
                      completed_at=None, params={}, counts={})
    return IngestReport(run, tables.node_counts(), tables.edge_counts(), timings, result.accuracy, str(dev),
                        meter.rounded(), pair_counts, attribution, skipped, result.batch_size, dist.world,
                        state is not None and state.resumed, list(result.class_names),
                        [w for w in (images.fit_note(), _near_chance(result.accuracy, len(result.class_names))) if w],
                        default_run if dist.main else None)


def _check_fits(ckpt: Checkpoint, images: ImageSet, layers: Sequence[str] | None, **settings: Any) -> None:
    """Refuse before any work when the plan's peak (:mod:`deepatlas.ingest.budget`) is more than
    the machine has free, with the flag that would fit."""
    from deepatlas.ingest.budget import ModelSizes, plan_ingest
    from deepatlas.ingest.capture import ActivationRecorder
    from deepatlas.memory import available_mb
    from deepatlas.models.sites import output_bytes
    from deepatlas.workflows.inspect import fits

    free = available_mb()
    if not free:
        return  # not Linux: nothing to check against
    example = ckpt.normalize(images.take([0, 1]))
    model = ckpt.model.cpu().eval()
    try:
        recorder = ActivationRecorder(model, layers, example=example)
    except (DeepAtlasError, RuntimeError):
        return  # the ingest itself says what is wrong, with its own message
    sizes = ModelSizes(recorder.n_units, len(images.class_names), images.input_shape, output_bytes(model, example[:1]) / 2**20)
    plan = plan_ingest(sizes, len(images), **settings)
    if plan.peak_mb > free:
        raise UsageError(f"this ingest would need about {plan.peak_mb:,.0f} MB more than the process holds and "
                         f"{free:,.0f} MB are free ({max(plan.memory_mb, key=plan.memory_mb.__getitem__)} stage); "
                         f"{fits(plan)} (`deepatlas inspect` shows the plan)")


def _influence_refused(model: Any, example: torch.Tensor) -> str | None:
    """Why influential scores do not run on ``model`` (tried on one image), or None."""
    from deepatlas.explain.influence import InfluentialScores

    try:
        InfluentialScores(model).attribute(example[:1], target=0)
    except DeepAtlasError as exc:
        return str(exc).splitlines()[0]
    return None


def _open_state(name: str, fingerprint: dict[str, Any], resume: bool, restart: bool, dist: Any, cls: Any) -> Any:
    """The run's checkpoints (:class:`ResumeState`), rank 0 first (it clears a discarded one)."""
    problem = None
    state = None
    if dist.main:
        try:
            state = cls(name, fingerprint, resume=resume, restart=restart, rank=0)
        except DeepAtlasError as exc:
            problem = exc
    dist.agree(problem)
    if not dist.main:
        state = cls(name, fingerprint, resume=resume, restart=False, rank=dist.rank)
    return state


def _per_class_stage(state: Any, stage: str, n_classes: int, run: Any) -> dict[str, torch.Tensor]:
    """Run a class-level attribution class by class, saving the rows done (when due) so a
    resumed ingest does only the classes left; {layer: (n_classes, units)}."""
    saved = state.load(stage) if state is not None else None
    out: dict[str, torch.Tensor] = dict(saved["maps"]) if saved else {}
    done = list(saved["done"]) if saved else []
    for c in range(n_classes):
        if c in done:
            continue
        rows = run([c])
        for layer, mat in rows.items():
            if layer not in out:
                out[layer] = torch.zeros_like(mat)
            out[layer][c] = mat[c]
        done.append(c)
        if state is not None and state.due():
            state.save(stage, {"maps": out, "done": done})
    return out


def _between_stage(state: Any, layers: Sequence[str], run: Any, progress: Any) -> dict[tuple[str, str], torch.Tensor]:
    """Neuron->neuron influence pair by pair, saving the pairs done (when due)."""
    saved = state.load("between") if state is not None else None
    done: dict[str, torch.Tensor] = dict(saved["pairs"]) if saved else {}
    for lower, upper in itertools.pairwise(layers):
        tag = f"{lower}->{upper}"
        if tag not in done:
            done[tag] = run([lower, upper])[(lower, upper)]
            if state is not None and state.due():
                state.save("between", {"pairs": done})
        progress(1)
    return {(lo, up): done[f"{lo}->{up}"] for lo, up in itertools.pairwise(layers)}
