"""Checkpoints: weights plus the metadata every other layer needs.

A checkpoint file is a ``torch.save`` dictionary loaded with ``weights_only=True`` (no
pickled code runs on load) holding::

    format      "deepatlas-checkpoint/1"
    arch        name in ARCHITECTURES, and arch_config (its keyword arguments)
    state_dict  the weights
    meta        class_names, input_shape, normalisation (mean, std), accuracy, dataset,
                seed, epochs, train_seconds, and weights_sha256

``weights_sha256`` hashes every tensor of the state dict in key order; loading recomputes it,
so flipped bytes inside the weights are caught even when the file still unpickles.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepatlas.errors import CheckpointError
from deepatlas.models.reference import build_model

__all__ = ["FORMAT", "Checkpoint", "load_checkpoint", "save_checkpoint", "weights_sha256"]

FORMAT = "deepatlas-checkpoint/1"


@dataclass
class Checkpoint:
    """A model with its metadata.

    Attributes
    ----------
    model : nn.Module
        In eval mode, on the CPU.
    arch : str
    arch_config : dict
    meta : dict
        ``class_names``, ``input_shape``, ``mean``, ``std``, ``accuracy`` and training facts.
    path : Path or None
    """

    model: nn.Module
    arch: str
    arch_config: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.meta["class_names"])

    @property
    def sha256(self) -> str:
        return str(self.meta["weights_sha256"])

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.arch)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Apply the recorded normalisation ``(x - mean) / std`` to [0, 1] images."""
        return (images - float(self.meta.get("mean", 0.0))) / float(self.meta.get("std", 1.0))


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the state dict's names, shapes, dtypes and bytes, in key order."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim too (BN counters)
    return h.hexdigest()


def save_checkpoint(
    path: str | Path, model: nn.Module, arch: str, arch_config: dict[str, Any], meta: dict[str, Any]
) -> Path:
    """Write a checkpoint atomically (temporary file, then rename) and return its path.

    ``meta`` must hold ``class_names`` and ``input_shape``; ``weights_sha256`` is added here.
    """
    for required in ("class_names", "input_shape"):
        if required not in meta:
            raise CheckpointError(f"checkpoint metadata needs {required!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta = {**meta, "weights_sha256": weights_sha256(state)}
    payload = {"format": FORMAT, "arch": arch, "arch_config": _plain(arch_config), "state_dict": state, "meta": _plain(meta)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load and verify a checkpoint.

    Raises
    ------
    CheckpointError
        Missing file; not a deepatlas checkpoint; corrupt or truncated; weights that do not
        fit the recorded architecture; or weights whose hash does not match the metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train one with `deepatlas train`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged archive
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(exc).__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a deepatlas checkpoint (expected format {FORMAT})")
    try:
        arch, config, state, meta = payload["arch"], payload["arch_config"], payload["state_dict"], payload["meta"]
    except KeyError as exc:
        raise CheckpointError(f"checkpoint {path} lacks the field {exc}") from exc
    model = build_model(arch, config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise CheckpointError(f"checkpoint {path} does not fit architecture {arch}: {detail}") from exc
    if weights_sha256(state) != meta.get("weights_sha256"):
        raise CheckpointError(f"checkpoint {path} is corrupt: its weights do not match their recorded sha256")
    model.eval()
    return Checkpoint(model, arch, dict(config), dict(meta), path)


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so ``weights_only`` loading accepts the metadata."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)  # str subclasses (torch.__version__) would not load safely
    return value
