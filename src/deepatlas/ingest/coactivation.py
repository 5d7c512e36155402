"""Run a model over a data set and summarise it as a co-activation graph (Horta & Mileo).

Nodes: the captured hidden units, one node per output class, and one per input pixel. The
class node's value per image is the model's softmax probability for that class (see
:data:`CLASS_VALUES`). Edge weight: Pearson correlation over the data set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from deepatlas.data.base import ImageSet
from deepatlas.errors import IngestError, UsageError
from deepatlas.ingest.capture import ActivationRecorder, LayerSpec
from deepatlas.ingest.stats import CoMoments, Confusion, Correlation

__all__ = ["CLASS_VALUES", "CoactivationResult", "compute_coactivation"]

#: How a class node's per-image value is taken from the model's output.
#: "probs" (default): softmax probabilities. The co-activation paper correlates the output
#: layer's activations, which for a classifier is the softmax; r(neuron, P(class)) is then
#: close to the point-biserial correlation of the neuron with "the model says this class",
#: which is what "drives Sandal" means to a user. "logits": the raw scores, a linear
#: function of the last hidden layer (use it to see the linear read-out, unaffected by the
#: softmax's coupling of the classes).
CLASS_VALUES = ("probs", "logits")


@dataclass
class CoactivationResult:
    """Everything the graph is built from; all tensors on the CPU.

    Attributes
    ----------
    layers : tuple of LayerSpec
    class_names : tuple of str
    units : Correlation
        Symmetric, over [hidden units..., classes...] (M = hidden + n_classes).
    pixels : Correlation
        x = pixels (P = C*H*W), y = the same M nodes.
    confusion : torch.Tensor
        (n_classes, n_classes) counts[true, predicted].
    input_shape : tuple of int
    n_samples : int
    seconds : dict of str to float
        Wall time per stage.
    """

    layers: tuple[LayerSpec, ...]
    class_names: tuple[str, ...]
    units: Correlation
    pixels: Correlation
    confusion: torch.Tensor
    input_shape: tuple[int, int, int]
    n_samples: int
    class_values: str
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def n_hidden(self) -> int:
        return sum(s.size for s in self.layers)

    @property
    def accuracy(self) -> float:
        return float(self.confusion.diagonal().sum()) / max(1, int(self.confusion.sum()))


def compute_coactivation(
    model: nn.Module,
    data: ImageSet,
    *,
    layers: Sequence[str] | None = None,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    class_values: str = "probs",
    dtype: torch.dtype = torch.float64,
    progress: Callable[[int], None] | None = None,
) -> CoactivationResult:
    """Stream ``data`` through ``model`` once and accumulate every correlation.

    Parameters
    ----------
    model : nn.Module
        Classifier returning (B, n_classes) logits. Put in eval mode here.
    data : ImageSet
    layers : sequence of str, optional
        Qualified module names; default: post-activation output of every conv/dense layer.
    batch_size : int, default 500
    device : str or torch.device, default "cpu"
        The model, the activations and the accumulators all live here.
    normalize : callable, optional
        Applied to each [0, 1] image batch before the model (the checkpoint's normalisation).
        Pixel correlations use the raw pixels; Pearson r is unchanged by affine maps anyway.
    class_values : {"probs", "logits"}, default "probs"
        See :data:`CLASS_VALUES`.
    dtype : torch.dtype, default torch.float64
        Accumulator precision.
    progress : callable, optional
        Called with the number of images after each batch.

    Returns
    -------
    CoactivationResult

    Raises
    ------
    IngestError
        Bad layers, wrong image shape for the model, a model output with NaN/Inf, or an
        output width that differs from the number of class names.

    References
    ----------
    Horta & Mileo (2019), Towards explaining deep neural networks through graph analysis.
    """
    if class_values not in CLASS_VALUES:
        raise UsageError(f"class_values must be one of {CLASS_VALUES}, got {class_values!r}")
    if batch_size <= 0:
        raise UsageError(f"batch_size must be positive, got {batch_size}")
    if len(data) < 2:
        raise UsageError("co-activation needs at least 2 images")
    device = torch.device(device)
    model = model.to(device).eval()
    prep = normalize or (lambda t: t)
    t0 = time.perf_counter()
    example = prep(data.images[:2]).to(device)
    try:
        recorder = ActivationRecorder(model, layers, example=example)
    except RuntimeError as exc:
        raise IngestError(f"the model cannot take images of shape {tuple(data.images.shape[1:])}: {str(exc).splitlines()[0]}") from exc
    with torch.no_grad():
        n_out = model(example).shape[-1]
    n_classes = len(data.class_names)
    if n_out != n_classes:
        raise IngestError(f"the model outputs {n_out} scores but the data set has {n_classes} classes")
    m = recorder.n_units + n_classes
    p = int(data.images[0].numel())
    units = CoMoments(m, dtype=dtype, device=device)
    pixels = CoMoments(p, m, dtype=dtype, device=device)
    confusion = Confusion(n_classes, device=device)
    bad = torch.zeros((), dtype=torch.bool, device=device)
    seconds = {"setup": time.perf_counter() - t0}
    t0 = time.perf_counter()
    for start in range(0, len(data), batch_size):
        raw = data.images[start : start + batch_size].to(device, non_blocking=True)
        labels = data.labels[start : start + batch_size].to(device, non_blocking=True)
        acts, out = recorder.record(prep(raw))
        bad |= ~torch.isfinite(out).all()  # checked once at the end: no per-batch sync
        cls = out.softmax(1) if class_values == "probs" else out
        nodes = torch.cat([acts, cls], dim=1)
        units.update(nodes)
        pixels.update(raw.flatten(1), nodes)
        confusion.update(out.argmax(1), labels)
        if progress is not None:
            progress(int(raw.shape[0]))
    if bool(bad):
        raise IngestError("the model produced NaN or Inf outputs on this data; nothing was stored")
    seconds["forward+stats"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    unit_corr = _to_cpu(units.compute())
    pixel_corr = _to_cpu(pixels.compute())
    seconds["correlate"] = time.perf_counter() - t0
    return CoactivationResult(
        layers=recorder.layers,
        class_names=data.class_names,
        units=unit_corr,
        pixels=pixel_corr,
        confusion=confusion.compute(),
        input_shape=data.input_shape,
        n_samples=len(data),
        class_values=class_values,
        seconds=seconds,
    )


def _to_cpu(c: Correlation) -> Correlation:
    return Correlation(c.r.cpu(), c.mean_x.cpu(), c.std_x.cpu(), c.dead_x.cpu(), c.mean_y.cpu(), c.std_y.cpu(),
                       c.dead_y.cpu(), c.n)
