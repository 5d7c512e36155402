"""Load the models people have: deepatlas checkpoints, torchvision builders, factory functions.

One entry point, :func:`load_model`, turns a ``--model`` spec into a :class:`Checkpoint`:

``PATH.pt``
    a checkpoint written by ``deepatlas train`` (unchanged).
``torchvision:NAME``
    ``torchvision.models.get_model(NAME, weights=None, num_classes=N)``: any classification
    builder, never with downloaded weights. Defaults: input 3x224x224, ImageNet mean/std.
``PATH/TO/file.py:factory`` or ``package.module:factory``
    a function returning the ``nn.Module``; called as ``factory(num_classes=N)`` when
    ``--num-classes`` is given, else ``factory()``. (The file is the user's own code and runs.)

Weights (``--weights FILE``): a state dict saved with ``torch.save`` (read with
``weights_only=True``; a ``{"state_dict": ...}`` or ``{"model_state_dict": ...}`` wrapper and a
``module.`` prefix from DataParallel are accepted) or a ``.safetensors`` file. A full pickled
model (``torch.save(model)``) is refused unless ``trust_pickle=True``. Without weights, the
builder's initialisation under ``torch.manual_seed(0)`` is used (random, but reproducible).

Sidecar: next to the weights, ``STEM.json`` or ``STEM.toml`` (``w.safetensors`` ->
``w.json``) may hold the keys ``class_names`` (list of str), ``input_shape`` ([C, H, W]),
``mean`` and ``std`` (a number or one per channel), ``num_classes`` and ``name``. Flags win
over the sidecar, the sidecar over the defaults.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import math
import re
import sys
import tomllib
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepatlas.errors import CheckpointError, UsageError
from deepatlas.limits import MAX_CLASSES, check_input_shape
from deepatlas.models.checkpoint import (
    FORMAT,
    MAX_CONFIG_INT,
    Checkpoint,
    file_sha256,
    load_checkpoint,
    safe_torch_load,
    weights_sha256,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SIDECAR_KEYS",
    "as_checkpoint",
    "complete_metadata",
    "find_by_hash",
    "is_factory_spec",
    "load_model",
    "load_sidecar",
    "model_props",
    "read_weights",
    "reload_model",
    "reload_run_model",
]

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

#: Keys a sidecar JSON/TOML may hold.
SIDECAR_KEYS = ("class_names", "input_shape", "mean", "std", "num_classes", "name")

_FACTORY = re.compile(r"^(?P<target>.+):(?P<func>[A-Za-z_][A-Za-z0-9_]*)$")


def load_sidecar(weights: Path) -> dict[str, Any]:
    """The ``STEM.json`` / ``STEM.toml`` next to a weights file, checked; {} when there is none."""
    for suffix in (".json", ".toml"):
        side = weights.with_suffix(suffix)
        if side == weights or not side.is_file():
            continue
        try:
            data = json.loads(side.read_text()) if suffix == ".json" else tomllib.loads(side.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"sidecar {side} is not valid {suffix[1:].upper()}: {exc}") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"sidecar {side} must hold a table/object with keys {', '.join(SIDECAR_KEYS)}")
        unknown = sorted(set(data) - set(SIDECAR_KEYS))
        if unknown:
            raise CheckpointError(f"sidecar {side}: unknown key(s) {', '.join(unknown)}; known: {', '.join(SIDECAR_KEYS)}")
        return _checked_meta(data, str(side))
    return {}


def _checked_meta(data: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if data.get("class_names") is not None:
        names = data["class_names"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise CheckpointError(f"{where}: class_names must be a non-empty list of strings")
        if len(set(names)) != len(names):
            raise CheckpointError(f"{where}: class_names holds duplicates")
        out["class_names"] = list(names)
    if data.get("input_shape") is not None:
        shape = data["input_shape"]
        if (not isinstance(shape, list) or len(shape) != 3
                or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_CONFIG_INT for d in shape)
                or shape[1] < 1 or shape[2] < 1):
            raise CheckpointError(f"{where}: input_shape must be [C, H, W] with positive integers, got {shape!r}")
        too_big = check_input_shape(shape, where)
        if too_big is not None:
            raise CheckpointError(too_big)
        out["input_shape"] = list(shape)
    for key in ("mean", "std"):
        if data.get(key) is None:
            continue
        value = data[key]
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise CheckpointError(f"{where}: {key} must be a number or a list of numbers, got {value!r}")
        if not all(math.isfinite(v) for v in values):
            raise CheckpointError(f"{where}: {key} must be finite, got {value!r}")
        if key == "std" and any(v <= 0 for v in values):
            raise CheckpointError(f"{where}: std must be positive, got {value!r}")
        out[key] = [float(v) for v in values] if isinstance(value, list) else float(value)
    if data.get("num_classes") is not None:
        n = data["num_classes"]
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CLASSES:
            raise CheckpointError(f"{where}: num_classes must be an integer in 1..{MAX_CLASSES:,}, got {n!r}")
        out["num_classes"] = n
    if data.get("name") is not None:
        if not isinstance(data["name"], str) or not data["name"]:
            raise CheckpointError(f"{where}: name must be a non-empty string")
        out["name"] = data["name"]
    return out


def read_weights(path: str | Path, *, trust_pickle: bool = False) -> dict[str, torch.Tensor] | nn.Module:
    """Read a weights file: a state dict (``.safetensors`` or ``torch.save``), or with
    ``trust_pickle`` a whole pickled module.

    Raises
    ------
    CheckpointError
        Missing, corrupt, a pickle that would run code (without ``trust_pickle``), a deepatlas
        checkpoint (give it as ``--model``), or not a mapping of names to tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path} is not a readable .safetensors file ({exc})") from None
    payload: Any
    if trust_pickle:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                payload = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise CheckpointError(f"{path} could not be unpickled ({type(exc).__name__}: {exc})") from None
        if isinstance(payload, nn.Module):
            return payload
    else:
        payload = safe_torch_load(path)
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        raise CheckpointError(f"{path} is a deepatlas checkpoint: pass it as --model, without --weights")
    if isinstance(payload, dict):
        for wrapper in ("state_dict", "model_state_dict", "model"):
            inner = payload.get(wrapper)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                payload = inner
                break
    if not isinstance(payload, dict) or not payload or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload.items()
    ):
        raise CheckpointError(f"{path} holds no state dict (a mapping of parameter names to tensors)")
    if all(k.startswith("module.") for k in payload):
        payload = {k[len("module."):]: v for k, v in payload.items()}
    return dict(payload)


def _torchvision_builder(name: str, num_classes: int | None) -> tuple[nn.Module, dict[str, Any]]:
    import torchvision

    names = set(torchvision.models.list_models(module=torchvision.models))
    if name not in names:
        close = sorted(n for n in names if n.startswith(name[:3]))[:8]
        hint = f"; close: {', '.join(close)}" if close else ""
        raise UsageError(f"torchvision has no classification model {name!r}{hint}")
    config: dict[str, Any] = {"weights": None}
    if num_classes is not None:
        config["num_classes"] = num_classes
    try:
        return torchvision.models.get_model(name, **config), config
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot build torchvision:{name}: {exc}") from None


def _import_factory(target: str, func: str) -> Any:
    if target.endswith(".py"):
        file = Path(target).resolve()
        if not file.is_file():
            raise UsageError(f"model file {file} does not exist")
        mod_name = f"deepatlas_user_model_{hashlib.sha1(str(file).encode()).hexdigest()[:12]}"
        spec = importlib.util.spec_from_file_location(mod_name, file)
        if spec is None or spec.loader is None:
            raise UsageError(f"cannot import {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except SystemExit as exc:  # sys.exit() in a model file must not become deepatlas's own exit
            sys.modules.pop(mod_name, None)
            raise UsageError(f"importing {file} called sys.exit({exc.code!r}); a model file must define the model, "
                             "not run a program") from None
        except Exception as exc:
            sys.modules.pop(mod_name, None)
            raise UsageError(f"importing {file} failed: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(target)
        except SystemExit as exc:
            raise UsageError(f"importing {target} called sys.exit({exc.code!r}); it must define the model") from None
        except ImportError as exc:
            raise UsageError(f"cannot import module {target!r}: {exc}") from None
    factory = getattr(module, func, None)
    if not callable(factory):
        raise UsageError(f"{target} has no function {func!r}")
    return factory


def _build_from_spec(spec: str, num_classes: int | None) -> tuple[nn.Module, str, dict[str, Any], dict[str, Any]]:
    """(model, arch, arch_config, default metadata) for a torchvision or factory spec."""
    if spec.startswith("torchvision:"):
        name = spec.split(":", 1)[1]
        model, config = _torchvision_builder(name, num_classes)
        return model, f"torchvision:{name}", config, {"input_shape": [3, 224, 224], "mean": IMAGENET_MEAN,
                                                     "std": IMAGENET_STD, "name": name}
    m = _FACTORY.match(spec)
    if m is None:
        raise UsageError(f"--model {spec!r} is neither a checkpoint file, torchvision:NAME, file.py:factory nor module:factory")
    target, func = m.group("target"), m.group("func")
    factory = _import_factory(target, func)
    try:
        model = factory(num_classes=num_classes) if num_classes is not None else factory()
    except SystemExit as exc:  # an exit code 0 from a factory would make a CI step pass with nothing done
        raise UsageError(f"{spec}() called sys.exit({exc.code!r}) instead of returning a model") from None
    except Exception as exc:
        raise UsageError(f"{spec}() failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise UsageError(f"{spec} returned a {type(model).__name__}, not a torch.nn.Module")
    config = {"num_classes": num_classes} if num_classes is not None else {}
    stem = Path(target).stem if target.endswith(".py") else target.rsplit(".", 1)[-1]
    return model, spec, config, {"name": f"{stem}-{func}"}


def is_factory_spec(spec: str) -> bool:
    if spec.startswith("torchvision:"):
        return True
    m = _FACTORY.match(spec)
    if m is None:
        return False
    target = m.group("target")
    return target.endswith(".py") or (not Path(spec).exists() and re.fullmatch(r"[A-Za-z_][\w.]*", target) is not None)


def load_model(
    spec: str | Path,
    *,
    weights: str | Path | None = None,
    num_classes: int | None = None,
    trust_pickle: bool = False,
    input_shape: list[int] | tuple[int, ...] | None = None,
    mean: float | list[float] | None = None,
    std: float | list[float] | None = None,
    class_names: list[str] | tuple[str, ...] | None = None,
) -> Checkpoint:
    """Load a model from a ``--model`` spec into a :class:`Checkpoint` (eval mode, CPU).

    Parameters
    ----------
    spec : str or path
        A deepatlas checkpoint path, ``torchvision:NAME``, ``file.py:factory`` or
        ``package.module:factory`` (see the module docstring).
    weights : path, optional
        ``.safetensors`` or a ``torch.save`` state dict; not with a deepatlas checkpoint.
    num_classes : int, optional
        Passed to the builder / factory as ``num_classes``.
    trust_pickle : bool, default False
        Allow a weights file that is a whole pickled model (runs code from the file).
    input_shape : [C, H, W], optional
        C = 0 means "keep the default channels". Overrides sidecar and defaults.
    mean, std : float or list of float, optional
        Normalisation of [0, 1] images; per channel when a list.
    class_names : list of str, optional

    Returns
    -------
    Checkpoint
        ``source`` holds what reloads it (absolute paths), ``meta["weights_sha256"]`` the
        hash of the state dict (the Model node's key) and ``file_sha256`` the weights file's.
        ``meta["class_names"]`` and ``meta["input_shape"]`` may be absent: they are then taken
        from the data set (:func:`deepatlas.workflows.build.ingest`).

    Raises
    ------
    CheckpointError, UsageError
    """
    spec = str(spec)
    if spec.endswith(":") and spec[:-1].endswith(".py"):
        raise UsageError(f"--model {spec}: name the function that builds the model after the colon, "
                         f"e.g. {spec}build")
    overrides = _checked_meta(
        {"class_names": list(class_names) if class_names else None, "mean": mean, "std": std,
         "num_classes": num_classes},
        "the command line",
    )
    if input_shape is not None:
        shape = list(input_shape)
        if len(shape) != 3 or shape[1] < 1 or shape[2] < 1 or shape[0] < 0:
            raise UsageError(f"input_shape must be [C, H, W], got {shape}")
    if not is_factory_spec(spec):
        if weights is not None:
            raise UsageError("--weights goes with --model torchvision:NAME or file.py:factory, not with a deepatlas checkpoint")
        path = Path(spec)
        if path.is_file() and path.suffix == ".safetensors":
            raise CheckpointError(f"{path} holds bare weights; pass the architecture as --model "
                                  "(torchvision:NAME or file.py:factory) and this file as --weights")
        ckpt = load_checkpoint(path)
        kept = dict(ckpt.meta)
        for key in ("class_names", "mean", "std"):
            if key in overrides:
                kept[key] = overrides[key]
        ckpt.meta = kept
        return ckpt

    weights_path = Path(weights).resolve() if weights is not None else None
    sidecar = load_sidecar(weights_path) if weights_path is not None else {}
    n_classes = num_classes if num_classes is not None else sidecar.get("num_classes")
    explicit = n_classes  # a factory gets num_classes only when it was asked for
    names = overrides.get("class_names") or sidecar.get("class_names")
    if n_classes is None and names:
        n_classes = len(names)  # torchvision builders: as many outputs as class names
    torch.manual_seed(0)  # the builder's initialisation, reproducible when no weights are given
    model, arch, config, defaults = _build_from_spec(spec, n_classes if spec.startswith("torchvision:") else explicit)
    state = read_weights(weights_path, trust_pickle=trust_pickle) if weights_path is not None else None
    if isinstance(state, nn.Module):
        model = state
        state = None
    if state is not None:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
            detail = lines[1] if len(lines) > 1 else lines[0]
            raise CheckpointError(f"{weights_path} does not fit {arch}: {detail}") from None
    model.eval()
    meta: dict[str, Any] = {**defaults, **{k: v for k, v in sidecar.items() if k != "num_classes"},
                            **{k: v for k, v in overrides.items() if k != "num_classes"}}
    if input_shape is not None:
        shape = list(input_shape)
        too_big = check_input_shape(shape, "input_shape") if len(shape) == 3 else None
        if too_big is not None:
            raise UsageError(too_big)
        if shape[0] == 0:
            shape[0] = int(meta.get("input_shape", [0])[0]) if meta.get("input_shape") else 0
        meta["input_shape"] = shape
    if meta.get("input_shape") and meta["input_shape"][0] == 0:
        meta["input_shape"] = None  # channels unknown: taken from the data set
    if not meta.get("input_shape"):
        meta.pop("input_shape", None)
    if meta.get("class_names") and n_classes is not None and len(meta["class_names"]) != n_classes:
        raise CheckpointError(f"{len(meta['class_names'])} class names for a model with {n_classes} classes")
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta["weights_sha256"] = weights_sha256(sd)
    source: dict[str, Any] = {"spec": spec if not spec.split(":", 1)[0].endswith(".py")
                              else f"{Path(spec.rsplit(':', 1)[0]).resolve()}:{spec.rsplit(':', 1)[1]}",
                              "weights": str(weights_path) if weights_path else None,
                              "num_classes": num_classes, "trust_pickle": trust_pickle,
                              "input_shape": list(input_shape) if input_shape is not None else None,
                              "mean": mean, "std": std, "class_names": list(class_names) if class_names else None}
    fsha = file_sha256(weights_path) if weights_path is not None else ""
    adapt_output(model)
    return Checkpoint(model, arch, config, meta, weights_path, source, fsha)


def _class_scores(_m: nn.Module, _i: object, out: Any) -> torch.Tensor | None:
    """A root forward hook: a tuple/list output -> its first element, a dict (or a Hugging Face
    ModelOutput) -> its ``logits``; a tensor passes untouched."""
    if isinstance(out, torch.Tensor):
        return None
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict):
        if isinstance(out.get("logits"), torch.Tensor):
            return out["logits"]
        tensors = [k for k, v in out.items() if isinstance(v, torch.Tensor)]
        if len(tensors) == 1:
            return out[tensors[0]]
        raise UsageError(f"the model returns a dict with keys {', '.join(map(str, out))}; deepatlas takes the class "
                         "scores from 'logits' (or the only tensor): wrap the model so it returns them")
    raise UsageError(f"the model returns a {type(out).__name__}; deepatlas needs the class scores as a (batch, classes) "
                     "tensor, a tuple starting with them, or a dict with 'logits'")


def adapt_output(model: nn.Module) -> None:
    """Let a model that returns a tuple (class scores first) or a dict with ``logits`` be used like
    one that returns the scores: a forward hook on the model itself (kept for the model's life,
    registered once) hands the rest of deepatlas the scores tensor."""
    if not getattr(model, "_deepatlas_scores_hook", False):
        model.register_forward_hook(_class_scores)
        model._deepatlas_scores_hook = True  # type: ignore[assignment]


def find_by_hash(file_hash: str, root: str | Path | None = None) -> Path | None:
    """The first file under ``root`` (default ``$DEEPATLAS_HOME/models``) whose bytes hash to
    ``file_hash``; ``None`` when there is none."""
    from deepatlas.paths import models_dir

    base = Path(root) if root is not None else models_dir()
    if not file_hash or not base.is_dir():
        return None
    for candidate in sorted(base.rglob("*")):
        if candidate.is_file() and candidate.suffix in (".pt", ".pth", ".bin", ".safetensors", ".ckpt"):
            if file_sha256(candidate) == file_hash:
                return candidate
    return None


def reload_model(source: dict[str, Any] | str, *, sha256: str, file_hash: str = "", override: str | Path | None = None) -> Checkpoint:
    """Load the model a run was made from, from its Model node's ``source``.

    A weights file (or deepatlas checkpoint) that has moved is found again by ``file_hash``
    under ``$DEEPATLAS_HOME/models``. ``override`` replaces the stored weights/checkpoint path
    (``--model`` on commands that reload a run). The loaded weights must hash to ``sha256``.

    Raises
    ------
    CheckpointError
        The file is gone and not found by hash, or holds other weights.
    """
    try:
        src = json.loads(source) if isinstance(source, str) else dict(source)
    except ValueError:
        raise CheckpointError("the run's Model node holds a malformed source (not JSON)") from None
    if not isinstance(src, dict) or "spec" not in src:
        raise CheckpointError("the run's Model node records no loadable source")
    kwargs = {k: src.get(k) for k in ("weights", "num_classes", "trust_pickle", "input_shape", "mean", "std", "class_names")}
    is_file_spec = not is_factory_spec(str(src["spec"]))
    current = str(override) if override is not None else (src["spec"] if is_file_spec else kwargs["weights"])
    if current is not None and not Path(current).is_file():
        if override is not None:
            raise CheckpointError(f"{override} does not exist")
        found = find_by_hash(file_hash)
        if found is None:
            from deepatlas.paths import models_dir

            raise CheckpointError(f"the run's model file {current} is gone and no file under {models_dir()} has its "
                                  "sha256; pass --model with the same weights")
        current = str(found)
    if is_file_spec:
        ckpt = load_model(current or src["spec"])
    else:
        kwargs["weights"] = current
        ckpt = load_model(src["spec"], weights=kwargs["weights"], num_classes=kwargs["num_classes"],
                          trust_pickle=bool(kwargs["trust_pickle"]), input_shape=kwargs["input_shape"],
                          mean=kwargs["mean"], std=kwargs["std"], class_names=kwargs["class_names"])
    if ckpt.sha256 != sha256:
        raise CheckpointError(f"{current or src['spec']} holds other weights than the run was made from (sha256 differs)")
    return ckpt


def complete_metadata(ckpt: Checkpoint, input_shape: tuple[int, int, int], class_names: tuple[str, ...], data_name: str) -> None:
    """Fill a loaded model's missing ``input_shape`` and ``class_names`` from its data set.

    Class names are taken from the data set only when the model has exactly as many outputs
    as the data set has classes; given names must match the output width (one dry forward
    pass on a zero image tells).

    Raises
    ------
    CheckpointError
        The class names cannot be taken from the data set.
    """
    if not ckpt.meta.get("input_shape"):
        ckpt.meta["input_shape"] = list(input_shape)
    device = next((p.device for p in ckpt.model.parameters()), torch.device("cpu"))
    with torch.no_grad():
        out = ckpt.model.eval()(ckpt.normalize(torch.zeros(1, *input_shape)).to(device))
    width = int(out.shape[-1]) if out.ndim == 2 else -1
    if ckpt.meta.get("class_names"):
        if width != len(ckpt.meta["class_names"]):
            raise CheckpointError(f"model {ckpt.name} has {len(ckpt.meta['class_names'])} class names but {width} outputs "
                                  "per image; fix --class-names or the sidecar's class_names")
        return
    if width != len(class_names):
        raise CheckpointError(
            f"model {ckpt.name} has {width if width > 0 else 'non-(N, classes)'} outputs and no class names, and "
            f"{data_name} has {len(class_names)} classes; pass --class-names with {width if width > 0 else 'its'} "
            "names or class_names in the weights' sidecar JSON/TOML"
        )
    ckpt.meta["class_names"] = list(class_names)


def model_props(ckpt: Checkpoint) -> dict[str, Any]:
    """The (:Model) node's properties: key = the state dict's sha256, the weights file's
    sha256, its absolute path, and the JSON ``source`` that loads the model again."""
    mean, std = ckpt.meta.get("mean"), ckpt.meta.get("std")
    return {
        "key": ckpt.sha256, "name": ckpt.name, "arch": ckpt.arch, "accuracy": ckpt.meta.get("accuracy"),
        "path": str(ckpt.path.resolve()) if ckpt.path else "", "file_sha256": ckpt.file_sha256,
        "source": json.dumps(ckpt.source, sort_keys=True),
        "input_shape": list(ckpt.meta.get("input_shape") or []),
        "mean": mean if isinstance(mean, list) else ([float(mean)] if mean is not None else None),
        "std": std if isinstance(std, list) else ([float(std)] if std is not None else None),
    }


def as_checkpoint(model: str | Path | Checkpoint) -> Checkpoint:
    """A loaded model passes through; a spec or path is loaded with :func:`load_model`."""
    return model if isinstance(model, Checkpoint) else load_model(model)


def reload_run_model(row: dict[str, Any], *, override: str | Path | None = None) -> Checkpoint:
    """Reload a run's model from its (:Model) node's properties ``sha``, ``path``, ``source``
    and ``file_sha`` (runs written before ``source`` existed reload from ``path``).

    Raises
    ------
    CheckpointError
    """
    source = row.get("source") or json.dumps({"spec": row.get("path") or ""})
    if not row.get("source") and override is None and not row.get("path"):
        raise CheckpointError("the run's Model node records no path; pass --model with the same weights")
    return reload_model(source, sha256=str(row.get("sha")), file_hash=str(row.get("file_sha") or ""), override=override)
