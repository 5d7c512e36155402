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

The metadata is checked before anything is built: ``arch_config`` must be a dict of plain
values whose integers lie in ``0..MAX_CONFIG_INT``; the model is first built on torch's
``meta`` device (no memory) and must hold exactly as many parameters as the stored weights, so
a crafted config cannot make the loader allocate gigabytes; ``class_names`` must be a non-empty
list of strings and ``input_shape`` three positive integers.

Models of other origins (torchvision, a factory function, a bare state dict or safetensors
file) are loaded by :mod:`deepatlas.models.loading` into the same :class:`Checkpoint`.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepatlas.errors import CheckpointError
from deepatlas.models.reference import build_model

__all__ = [
    "FORMAT",
    "MAX_CONFIG_INT",
    "PICKLE_REFUSED",
    "Checkpoint",
    "load_checkpoint",
    "safe_torch_load",
    "save_checkpoint",
    "weights_sha256",
]

FORMAT = "deepatlas-checkpoint/1"

#: Largest integer accepted anywhere in a checkpoint's ``arch_config`` or ``input_shape``.
MAX_CONFIG_INT = 1 << 20

#: What a file that would need unpickling code is called (issue 18, item 7).
PICKLE_REFUSED = (
    "this file is a pickled object, not a state dict or a deepatlas checkpoint; "
    "deepatlas never unpickles code (see --trust-pickle)"
)


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
        ``class_names``, ``input_shape``, ``mean``, ``std`` (a float, or one per channel),
        ``accuracy``, ``weights_sha256`` and training facts.
    path : Path or None
        The file the weights came from (absolute), if any.
    source : dict
        JSON-able keyword arguments of :func:`deepatlas.models.loading.load_model` that load
        this model again (``{"spec": path}`` for a deepatlas checkpoint).
    file_sha256 : str
        SHA-256 of the weights file's bytes ("" when there is no file): how a moved file is
        found again under ``$DEEPATLAS_HOME/models``.
    """

    model: nn.Module
    arch: str
    arch_config: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    source: dict[str, Any] = field(default_factory=dict)
    file_sha256: str = ""

    @property
    def class_names(self) -> tuple[str, ...]:
        names = self.meta.get("class_names")
        if not names:
            raise CheckpointError(
                f"model {self.name} has no class names; pass --class-names or put class_names in a sidecar JSON/TOML"
            )
        return tuple(names)

    @property
    def sha256(self) -> str:
        return str(self.meta["weights_sha256"])

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.arch)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Apply the recorded normalisation ``(x - mean) / std`` to [0, 1] images.

        ``mean`` and ``std`` are each a float or a list with one value per channel.
        """
        mean, std = self.meta.get("mean", 0.0), self.meta.get("std", 1.0)
        if isinstance(mean, (list, tuple)) or isinstance(std, (list, tuple)):
            m = torch.as_tensor(mean, dtype=images.dtype).reshape(1, -1, 1, 1)
            s = torch.as_tensor(std, dtype=images.dtype).reshape(1, -1, 1, 1)
            return (images - m.to(images.device)) / s.to(images.device)
        return (images - float(mean)) / float(std)


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
    payload = safe_torch_load(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a deepatlas checkpoint (expected format {FORMAT}); for bare weights pass the "
            "architecture as --model torchvision:NAME or file.py:factory and this file as --weights"
        )
    try:
        arch, config, state, meta = payload["arch"], payload["arch_config"], payload["state_dict"], payload["meta"]
    except KeyError as exc:
        raise CheckpointError(f"checkpoint {path} lacks the field {exc}") from exc
    _check_metadata(path, arch, config, state, meta)
    _check_size(path, arch, config, state)
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
    path = path.resolve()
    return Checkpoint(model, arch, dict(config), dict(meta), path, {"spec": str(path)}, file_sha256(path))


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def safe_torch_load(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` with one clear error for each way it can fail.

    A file whose unpickling would import or call anything (a ``torch.save(model)`` file, a
    crafted payload) is refused with :data:`PICKLE_REFUSED`; nothing in it runs and torch's
    warning about ``weights_only`` does not reach the user.

    Raises
    ------
    CheckpointError
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" in str(exc).lower():  # the unpickler was asked to import something: code, not data
            raise CheckpointError(f"{path}: {PICKLE_REFUSED}") from None
        calls = pickle_imports(path)
        if calls:
            raise CheckpointError(f"{path}: a pickle that would run code when loaded (it imports {', '.join(calls[:3])}); "
                                  "nothing in it was run; deepatlas never unpickles code (see --trust-pickle)") from None
        raise CheckpointError(f"{path} is corrupt or truncated (UnpicklingError)") from None
    except Exception as exc:  # torch raises many types for a damaged archive
        raise CheckpointError(f"{path} is corrupt or truncated ({type(exc).__name__})") from None


def pickle_imports(path: str | Path, limit: int = 1 << 24) -> list[str]:
    """The ``module.name`` globals a plain (non-zip) pickle file would import when loaded, read
    from its opcodes with :mod:`pickletools` (nothing is executed); [] for other files or
    unreadable opcode streams. Only the first ``limit`` bytes are read."""
    import pickletools

    try:
        with open(path, "rb") as fh:
            data = fh.read(limit)
    except OSError:
        return []
    found: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL" and isinstance(arg, str):
                found.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
            if op.name == "STOP":
                break
    except Exception:  # not a pickle, or cut off: whatever was seen so far
        pass
    return list(dict.fromkeys(found))


def _ints(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [i for v in value.values() for i in _ints(v)]
    if isinstance(value, (list, tuple)):
        return [i for v in value for i in _ints(v)]
    return [value]


def _check_metadata(path: Path, arch: Any, config: Any, state: Any, meta: Any) -> None:
    """Reject crafted metadata with one clear error before anything is built."""
    bad = f"checkpoint {path} has malformed metadata:"
    if not isinstance(arch, str):
        raise CheckpointError(f"{bad} arch is a {type(arch).__name__}, not a string")
    if not isinstance(config, dict):
        raise CheckpointError(f"{bad} arch_config is a {type(config).__name__}, not a dict")
    if not isinstance(meta, dict):
        raise CheckpointError(f"{bad} meta is a {type(meta).__name__}, not a dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{bad} state_dict is not a dict of tensors")
    for value in _ints(config):
        if isinstance(value, bool) or value is None or isinstance(value, (float, str)):
            continue
        if not isinstance(value, int):
            raise CheckpointError(f"{bad} arch_config holds a {type(value).__name__}")
        if not 0 <= value <= MAX_CONFIG_INT:
            raise CheckpointError(f"{bad} arch_config value {value} is outside 0..{MAX_CONFIG_INT}")
    names = meta.get("class_names")
    if not names:
        raise CheckpointError(f"{bad} it records no class names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{bad} class_names must be a list of strings, got {type(names).__name__}")
    shape = meta.get("input_shape")
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= MAX_CONFIG_INT for d in shape)):
        raise CheckpointError(f"{bad} input_shape must be three positive integers (C, H, W), got {shape!r}")
    for key in ("mean", "std"):
        value = meta.get(key, 0.0 if key == "mean" else 1.0)
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise CheckpointError(f"{bad} {key} must be a number or a list of numbers, got {value!r}")
        if key == "std" and any(v <= 0 for v in values):
            raise CheckpointError(f"{bad} std must be positive, got {value!r}")


def _check_size(path: Path, arch: str, config: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """Build the architecture on the meta device and compare its size with the stored weights."""
    try:
        with torch.device("meta"):
            probe = build_model(arch, config)
    except CheckpointError:
        raise
    except Exception as exc:  # a negative width and the like: torch raises RuntimeError
        raise CheckpointError(f"cannot build {arch} from checkpoint {path}'s arch_config: {exc}") from None
    wanted = sum(t.numel() for t in probe.state_dict().values())
    stored = sum(t.numel() for t in state.values())
    if wanted != stored:
        raise CheckpointError(
            f"checkpoint {path} does not fit architecture {arch}: its arch_config asks for {wanted:,} weights, "
            f"the file holds {stored:,}"
        )


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so ``weights_only`` loading accepts the metadata."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)  # str subclasses (torch.__version__) would not load safely
    return value
