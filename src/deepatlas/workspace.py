"""The Workspace: what a job works on, bound once (graph, run, model, data, device, out folder,
progress), and the base of every workflow's result.

Every workflow in :mod:`deepatlas.workflows` takes a :class:`Workspace` first and returns a
:class:`Result` dataclass; the CLI builds the Workspace from its shared options
(``deepatlas.cli._common``), calls one workflow and renders the result (``to_json()`` for
``--json``). Scripts do the same::

    from deepatlas import Workspace
    from deepatlas.workflows.experiments import experiment_knockout

    with Workspace(run="fashion-cnn-fashion-mnist-test") as ws:
        result = experiment_knockout(ws, "Sandal", ks=[0, 4, 16])
    print(result.to_json()["top"]["class_error"])

Importing this module does not import torch (read-only commands build Workspaces too); the
model, the images and the device are loaded on first use and kept.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepatlas.errors import CheckpointError, UsageError
from deepatlas.paths import models_dir, out_dir

if TYPE_CHECKING:
    import torch

    from deepatlas.data.base import ImageSet
    from deepatlas.db.graph import Graph
    from deepatlas.db.runs import RunInfo
    from deepatlas.models.checkpoint import Checkpoint

__all__ = ["DataSource", "ModelSource", "Progress", "Result", "Workspace", "no_progress", "optional", "pick_device"]

#: progress(stage, advance, total): called as work is done; total may be 0 when unknown.
Progress = Callable[[str, int, int], None]


def no_progress(stage: str, advance: int, total: int) -> None:
    """The default :data:`Progress`: report nothing."""
    return None


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU. Asking for CUDA without one is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("CUDA was asked for but torch sees no GPU here; use --device cpu")
    return device


def default_model_path() -> Path:
    """The reference checkpoint `deepatlas demo` and `deepatlas train` write."""
    return models_dir() / "fashion-cnn.pt"


@dataclass
class ModelSource:
    """How to get a model: a deepatlas checkpoint, ``torchvision:NAME``, ``file.py:factory`` or
    ``package.module:factory``, with the options of :func:`deepatlas.models.loading.load_model`.

    ``spec=None`` means the reference checkpoint for commands that explain a model, and the
    run's own model for commands that work on a run.
    """

    spec: str | Path | None = None
    weights: str | Path | None = None
    num_classes: int | None = None
    trust_pickle: bool = False
    class_names: list[str] | None = None
    input_shape: list[int] | None = None
    mean: float | list[float] | None = None
    std: float | list[float] | None = None

    @property
    def given(self) -> bool:
        """Whether the user named a model or weights at all."""
        return self.spec is not None or self.weights is not None

    def options(self) -> dict[str, Any]:
        return {"weights": self.weights, "num_classes": self.num_classes, "trust_pickle": self.trust_pickle,
                "class_names": self.class_names, "input_shape": self.input_shape, "mean": self.mean, "std": self.std}

    def load(self) -> Checkpoint:
        from deepatlas.models.loading import load_model

        return load_model(self.spec if self.spec is not None else default_model_path(), **self.options())


@dataclass
class DataSource:
    """Which images: a ``--data`` spec (see :func:`deepatlas.data.formats.load_data`), a split,
    the folder of a built-in data set's files, and an optional limit."""

    spec: str = "fashion-mnist"
    split: str = "test"
    data_dir: str | Path | None = None
    limit: int | None = None

    def load(self, input_shape: tuple[int, int, int] | list[int] | None = None) -> ImageSet:
        from deepatlas.data.formats import load_data

        return load_data(self.spec, self.split, data_dir=self.data_dir, input_shape=input_shape, limit=self.limit)


class Workspace:
    """What a job works on, bound once.

    Parameters
    ----------
    graph : Graph, optional
        An open connection; by default one is opened from the environment on first use and
        closed when the Workspace is (use it as a context manager).
    run : str, optional
        Run name; default: see :func:`deepatlas.db.runs.resolve_run`.
    model : ModelSource, str, Path or Checkpoint, optional
        The model (a spec string is wrapped in a :class:`ModelSource`; a loaded Checkpoint is
        used as it is).
    data : DataSource, str or ImageSet, optional
        The images (a spec string is wrapped in a :class:`DataSource`; a loaded ImageSet is used
        as it is, cut to ``limit`` if one is given).
    limit : int, optional
        Only the first ``limit`` images (sets ``data.limit``).
    device : str, default "auto"
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    out_dir : path, optional
        Folder for figures; default ``$DEEPATLAS_HOME/out``.
    progress : callable, optional
        ``progress(stage, advance, total)``.
    """

    def __init__(self, graph: Graph | None = None, *, run: str | None = None,
                 model: ModelSource | str | Path | Checkpoint | None = None, data: DataSource | str | ImageSet | None = None,
                 limit: int | None = None, device: str = "auto", out_dir: str | Path | None = None,
                 progress: Progress | None = None) -> None:
        self._graph = graph
        self._own_graph = False
        self._cache: dict[str, Any] = {}
        self.run = run
        if isinstance(model, ModelSource):
            self.model = model
        elif isinstance(model, str | Path) or model is None:
            self.model = ModelSource(spec=model)
        else:  # a loaded Checkpoint
            self.model = ModelSource(spec=model.path)
            self._cache["ckpt"] = model
        if isinstance(data, DataSource):
            self.data = data
        elif isinstance(data, str) or data is None:
            self.data = DataSource(spec=data) if data is not None else DataSource()
        else:  # a loaded ImageSet
            self.data = DataSource(spec=data.name, split=data.split)
            self._cache["given_images"] = data
        if limit is not None:
            self.data.limit = limit
        self.device_name = device
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress: Progress = progress or no_progress

    def __repr__(self) -> str:
        return (f"Workspace(run={self.run!r}, model={self.model!r}, data={self.data!r}, device={self.device_name!r}, "
                f"out_dir={self.out_dir!r})")

    # -- the graph -------------------------------------------------------------------------
    @property
    def graph(self) -> Graph:
        """The connection (opened from the environment on first use)."""
        if self._graph is None:
            from deepatlas.db.graph import Graph

            self._graph = Graph()
            self._own_graph = True
        return self._graph

    def close(self) -> None:
        """Close the connection if this Workspace opened it."""
        if self._own_graph and self._graph is not None:
            self._graph.close()
            self._graph = None
            self._own_graph = False

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_info(self) -> RunInfo:
        """The run this Workspace works on (resolved once; says which on stderr when defaulted)."""
        if "run" not in self._cache:
            from deepatlas.db.runs import resolve_run

            self._cache["run"] = resolve_run(self.graph, self.run)
        info: RunInfo = self._cache["run"]
        return info

    # -- model, data, device ---------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        if "device" not in self._cache:
            self._cache["device"] = pick_device(self.device_name)
        dev: torch.device = self._cache["device"]
        return dev

    @property
    def out(self) -> Path:
        """Where figures go (``out_dir``, else ``$DEEPATLAS_HOME/out``)."""
        return self.out_dir if self.out_dir is not None else out_dir()

    def checkpoint(self) -> Checkpoint:
        """The model named by :attr:`model` (the reference checkpoint when none is), loaded once."""
        if "ckpt" not in self._cache:
            self._cache["ckpt"] = self.model.load()
        ckpt: Checkpoint = self._cache["ckpt"]
        return ckpt

    def images(self) -> ImageSet:
        """The images named by :attr:`data`, fitted to the model's input shape, loaded once."""
        if "images" not in self._cache:
            given = self._cache.get("given_images")
            if given is not None:
                self._cache["images"] = given.subset(self.data.limit) if self.data.limit is not None else given
            else:
                self._cache["images"] = self.data.load(self.checkpoint().meta.get("input_shape"))
        images: ImageSet = self._cache["images"]
        return images

    def run_checkpoint(self) -> Checkpoint:
        """The run's own model, verified by the weights' sha256.

        Found from the run's (:Model) node (a moved file by its hash under
        ``$DEEPATLAS_HOME/models``). A :attr:`model` that is a file path or ``weights`` alone
        replaces the stored file (same weights, moved); a full spec (``torchvision:NAME`` ...)
        is loaded as given and must hold the run's weights.
        """
        if "run_ckpt" in self._cache:
            ckpt: Checkpoint = self._cache["run_ckpt"]
            return ckpt
        from deepatlas.db.runs import run_model_row
        from deepatlas.models.loading import is_factory_spec, reload_run_model

        info = self.run_info()
        row = run_model_row(self.graph, info)
        spec = self.model.spec
        if spec is not None and is_factory_spec(str(spec)):
            ckpt = self.model.load()
            if ckpt.sha256 != row.get("sha"):
                raise CheckpointError(f"{spec} holds other weights than run {info.name} was made from (sha256 differs)")
        else:
            ckpt = reload_run_model(row, override=spec if spec is not None else self.model.weights)
        self._cache["run_ckpt"] = ckpt
        return ckpt

    def run_images(self) -> ImageSet:
        """The run's own images: its data set, split and number of images (``data.data_dir``
        says where a built-in data set's files are)."""
        if "run_images" not in self._cache:
            from deepatlas.data.formats import load_data

            info, ckpt = self.run_info(), self.run_checkpoint()
            self._cache["run_images"] = load_data(info.dataset or "fashion-mnist", info.split or "test",
                                                  data_dir=self.data.data_dir, input_shape=ckpt.meta.get("input_shape"),
                                                  limit=info.n_samples or None)
        images: ImageSet = self._cache["run_images"]
        return images


# -- results ---------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """JSON-ready: dataclasses and mappings recursively, numpy/torch scalars and arrays as
    numbers and lists, paths as strings, non-finite floats as None."""
    if isinstance(value, Result):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return _plain(value.tolist())
    return value


@dataclass
class Result:
    """Base of every workflow's result: a dataclass whose :meth:`to_json` is what ``--json``
    prints. Fields declared with ``field(metadata={"json": False})`` (large arrays kept for
    figures and scripts) are left out of the JSON; ``metadata={"key": "class"}`` names a field
    whose JSON key is a Python keyword. Optional fields that are None (a figure not drawn, an
    experiment not recorded) are left out too."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not f.metadata.get("json", True) or (value is None and f.metadata.get("optional", False)):
                continue
            out[f.metadata.get("key", f.name)] = _plain(value)
        return out


def optional(default: Any = None) -> Any:
    """A result field left out of the JSON while it is None (a figure not drawn ...)."""
    return field(default=default, metadata={"optional": True})
