"""Shared CLI plumbing: consoles, error handling, JSON output, progress bars."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from deepatlas.errors import DeepAtlasError, UsageError
from deepatlas.limits import check_input_shape
from deepatlas.workspace import ModelSource

__all__ = [
    "ClassNamesOpt",
    "DataDirOpt",
    "DataSpecOpt",
    "DeviceOpt",
    "InputSizeOpt",
    "JsonOpt",
    "MeanOpt",
    "ModelSpecOpt",
    "NumClassesOpt",
    "RunOpt",
    "StdOpt",
    "TrustPickleOpt",
    "WeightsOpt",
    "cli_errors",
    "console",
    "err",
    "install_signal_handlers",
    "model_flags",
    "model_options",
    "parse_grid",
    "print_json",
    "progress_bars",
    "setup_logging",
]

# Options several commands share, declared once so their flags and help read the same everywhere.
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
RunOpt = Annotated[str | None, typer.Option(help="Run name. Default: the run last used here (by --run or an ingest); else the "
                                           "latest, when all runs come from one model.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
DataDirOpt = Annotated[Path | None, typer.Option(help="Folder with the Fashion-MNIST IDX files.")]

# Your model, your data (see README "Your own model" and deepatlas.models.loading).
ModelSpecOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="A deepatlas checkpoint, torchvision:NAME, file.py:factory or package.module:factory. "
    "Default: $DEEPATLAS_HOME/models/fashion-cnn.pt")]
WeightsOpt = Annotated[Path | None, typer.Option(
    help="Weights for a torchvision:/factory model: .safetensors or a torch.save state dict "
    "(a sidecar STEM.json/STEM.toml next to it may give class_names, input_shape, mean, std).")]
NumClassesOpt = Annotated[int | None, typer.Option(min=1, help="Classes of a torchvision:/factory model.")]
TrustPickleOpt = Annotated[bool, typer.Option(
    "--trust-pickle", help="Allow a weights file that is a whole pickled model; unpickling RUNS CODE from the file.")]
ClassNamesOpt = Annotated[str | None, typer.Option(help="Comma-separated class names, in output order.")]
InputSizeOpt = Annotated[str | None, typer.Option(help="Model input: N, HxW or CxHxW (torchvision default 3x224x224).")]
MeanOpt = Annotated[str | None, typer.Option(help="Normalisation mean of [0,1] images: one number or one per channel, comma-separated.")]
StdOpt = Annotated[str | None, typer.Option(help="Normalisation std: one number or one per channel, comma-separated.")]
DataSpecOpt = Annotated[str, typer.Option(
    help="fashion-mnist, digits, imagefolder:DIR, cifar10:DIR, cifar100:DIR, mnist:DIR or npz:FILE.")]


def _floats(flag: str, text: str | None) -> float | list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes a number or comma-separated numbers, got {text!r}") from None
    if not values:
        raise UsageError(f"{flag} takes a number or comma-separated numbers, got {text!r}")
    return values[0] if len(values) == 1 else values


def model_options(
    *, weights: Path | None = None, num_classes: int | None = None, trust_pickle: bool = False,
    class_names: str | None = None, input_size: str | None = None, mean: str | None = None, std: str | None = None,
) -> dict[str, Any]:
    """The model flags parsed into keyword arguments of ``deepatlas.models.loading.load_model``
    (plain values only: this module must not import torch)."""
    shape: list[int] | None = None
    if input_size is not None:
        try:
            dims = [int(p) for p in input_size.lower().replace(",", "x").split("x")]
        except ValueError:
            raise UsageError(f"--input-size takes N, HxW or CxHxW (e.g. 3x224x224), got {input_size!r}") from None
        shape = [0, dims[0], dims[0]] if len(dims) == 1 else [0, *dims] if len(dims) == 2 else dims
        if len(shape) != 3 or shape[0] < 0 or shape[1] < 1 or shape[2] < 1 or max(shape) > 1 << 20:
            raise UsageError(f"--input-size takes N, HxW or CxHxW with positive sizes, got {input_size!r}")
        too_big = check_input_shape(shape, "--input-size")
        if too_big is not None:
            raise UsageError(too_big)
    names = [n.strip() for n in class_names.split(",")] if class_names is not None else None
    if names is not None and (not all(names) or len(set(names)) != len(names)):
        raise UsageError(f"--class-names takes distinct, non-empty comma-separated names, got {class_names!r}")
    return {"weights": weights, "num_classes": num_classes, "trust_pickle": trust_pickle, "class_names": names,
            "input_shape": shape, "mean": _floats("--mean", mean), "std": _floats("--std", std)}


RunModelSpecOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="The run's model, if its stored file moved: a deepatlas checkpoint or weights file, or a full spec "
    "(torchvision:NAME, file.py:factory) holding the same weights. Default: the run's own model, found by its hash.")]

_MODEL_FLAGS: dict[str, Any] = {"weights": WeightsOpt, "num_classes": NumClassesOpt, "trust_pickle": TrustPickleOpt,
                                "class_names": ClassNamesOpt, "input_size": InputSizeOpt, "mean": MeanOpt, "std": StdOpt}


def model_flags(*, of_run: bool = False) -> Callable[[F], F]:
    """Give a command every model flag (``--model``, ``--weights``, ``--num-classes``,
    ``--trust-pickle``, ``--class-names``, ``--input-size``, ``--mean``, ``--std``) in place of
    its parameter ``model``, which then receives them parsed into one
    :class:`~deepatlas.workspace.ModelSource`. ``of_run``: the command works on a run, whose
    own model is the default.

    Apply it under ``@cli_errors`` so a bad flag becomes one error line.
    """

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        params: list[inspect.Parameter] = []
        for p in sig.parameters.values():
            if p.name != "model":
                params.append(p)
                continue
            params.append(inspect.Parameter("model", p.kind, default=None, annotation=RunModelSpecOpt if of_run else ModelSpecOpt))
            params += [inspect.Parameter(name, p.kind, default=False if name == "trust_pickle" else None, annotation=kind)
                       for name, kind in _MODEL_FLAGS.items()]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            flags = {name: kwargs.pop(name, False if name == "trust_pickle" else None) for name in _MODEL_FLAGS}
            kwargs["model"] = ModelSource(spec=kwargs.pop("model", None), **model_options(**flags))
            return fn(*args, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper  # type: ignore[return-value]

    return decorate


console = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def cli_errors(fn: F) -> F:
    """Turn a library error into one red line on stderr and exit code 1 (2 for bad usage)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DeepAtlasError as exc:
            message = str(exc).strip() or type(exc).__name__
            first, *rest = message.splitlines()
            err.print(f"[bold red]error:[/] {first}", markup=True, highlight=False, soft_wrap=True)
            for line in rest:  # e.g. the server log's last lines
                err.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except OSError as exc:  # a folder that cannot be written, a file that vanished
            where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
            err.print(f"[bold red]error:[/] cannot access{where}: {exc.strerror or exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as exc:
            terminated = isinstance(exc, Terminated)
            err.print("[red]terminated[/]" if terminated else "[red]interrupted[/]")
            raise typer.Exit(143 if terminated else 130) from None
        except Exception as exc:  # the driver may fail while unwinding an interrupt (BufferError)
            cause = _interrupt_behind(exc)
            if cause is None:
                raise
            err.print("[red]terminated[/]" if isinstance(cause, Terminated) else "[red]interrupted[/]")
            raise typer.Exit(143 if isinstance(cause, Terminated) else 130) from None

    return wrapper  # type: ignore[return-value]


class _Notices(logging.Handler):
    """deepatlas's own log lines (which run a command uses, a clean-up that failed) as one
    dim line each on stderr; stdout stays clean for --json."""

    def emit(self, record: logging.LogRecord) -> None:
        err.print(record.getMessage(), style="dim" if record.levelno < logging.WARNING else "yellow",
                  markup=False, highlight=False, soft_wrap=True)


def plain_help(app: typer.Typer) -> None:
    """Click's plain help for every command: at 80 columns Typer's rich help squeezes the text
    into a fifth of the width and cuts values and defaults with "…"; click's wraps them whole.
    Value placeholders name the value (``--limit LIMIT``, ``--data DATA``) instead of a Python
    type (``<int range>``); choices stay ``a|b|c``; flags show none."""
    from typer.core import _TyperParameter

    app.rich_markup_mode = None
    for group in app.registered_groups:
        if group.typer_instance is not None:
            plain_help(group.typer_instance)
    if getattr(_TyperParameter.display_type, "_deepatlas", False):
        return
    typed = _TyperParameter.display_type

    def display_type(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False) or getattr(self, "is_bool_flag", False):
            return None
        if self.type_descriptor.is_choice:
            return typed(self, ctx)
        return (self.name or "value").upper()

    display_type._deepatlas = True  # type: ignore[attr-defined]
    _TyperParameter.display_type = display_type  # type: ignore[method-assign,assignment]


def reflow_help(app: typer.Typer) -> None:
    """Let every command's help wrap to the terminal: join the lines inside each paragraph of its
    docstring (Typer's rich help keeps a docstring's line breaks, which at 80 columns ends lines
    mid-sentence). List items (``-``, ``*``, ``1.``) and indented lines keep their own line."""
    for info in app.registered_commands:
        doc = info.help or (inspect.getdoc(info.callback) if info.callback else None)
        if doc:
            info.help = _reflow(doc)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            reflow_help(group.typer_instance)


def _reflow(doc: str) -> str:
    paragraphs = []
    for para in inspect.cleandoc(doc).split("\n\n"):
        lines: list[str] = []
        for line in para.split("\n"):
            starts_item = line[:2] in ("- ", "* ") or line[:1] in (" ", "\b") or line.split(" ", 1)[0].rstrip(".").isdigit()
            if lines and not starts_item and not lines[-1].startswith("\b"):
                lines[-1] = f"{lines[-1]} {line.strip()}"
            elif lines and starts_item and line.startswith(" ") and lines[-1][:1] in ("-", "*"):
                lines[-1] = f"{lines[-1]} {line.strip()}"  # a list item's continuation line
            else:
                lines.append(line)
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def setup_logging(driver_log: Path | None = None) -> None:
    """Route deepatlas's notices to stderr and the Neo4j driver's own log lines (its retry
    messages while a server dies) to ``driver_log`` or nowhere, never to the terminal."""
    ours = logging.getLogger("deepatlas")
    if not any(isinstance(h, _Notices) for h in ours.handlers):
        ours.addHandler(_Notices())
        ours.setLevel(logging.INFO)
        ours.propagate = False
    driver = logging.getLogger("neo4j")
    driver.propagate = False
    if not driver.handlers:
        handler: logging.Handler = logging.NullHandler()
        if driver_log is not None:
            try:
                driver_log.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(driver_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                handler = logging.StreamHandler(os.fdopen(fd, "a"))
                handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
            except OSError:
                handler = logging.NullHandler()
        driver.addHandler(handler)
        driver.setLevel(logging.INFO)


class Terminated(KeyboardInterrupt):
    """SIGTERM (CI cancellation, ``timeout``), handled like Ctrl-C: a run being written is
    marked failed and its rows removed, one line, exit 143."""


def _on_sigterm(_signum: int, _frame: object) -> None:
    from deepatlas import stopping

    stopping.start_deadline()
    raise Terminated()


def install_signal_handlers() -> None:
    """SIGTERM raises :class:`Terminated` in the main thread (the CLI calls this once), with a
    deadline after which the process exits 143 regardless (:mod:`deepatlas.stopping`)."""
    import signal

    signal.signal(signal.SIGTERM, _on_sigterm)


def _interrupt_behind(exc: BaseException) -> KeyboardInterrupt | None:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return cur
        seen.add(id(cur))
        cur = cur.__context__ or cur.__cause__
    return None


def _default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout (nothing else goes there with --json)."""
    sys.stdout.write(json.dumps(data, indent=2, default=_default) + "\n")
    sys.stdout.flush()


@contextmanager
def progress_bars(enabled: bool = True) -> Iterator[Callable[[str, int, int], None]]:
    """A ``progress(stage, advance, total)`` callback drawing one bar per stage on stderr."""
    if not enabled:
        yield lambda stage, advance, total: None
        return
    bars = Progress(
        TextColumn("[bold]{task.description:<8}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False,
    )
    tasks: dict[str, Any] = {}

    def update(stage: str, advance: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total or None)
        bars.update(tasks[stage], advance=advance)

    with bars:
        yield update


def check_correlation(kind: str) -> str:
    """``--correlation``: one of the kinds :data:`deepatlas.db.runs.CORRELATION_NAMES` names
    (checked here, before torch is imported), else a usage error (exit 2)."""
    from deepatlas.db.runs import CORRELATION_NAMES

    if kind not in CORRELATION_NAMES:
        raise typer.BadParameter(f"{kind!r} is not {' or '.join(CORRELATION_NAMES)}", param_hint="--correlation")
    return kind


def parse_grid(text: str) -> str | tuple[int, int]:
    """``--pixel-grid``: ``auto``, ``off`` or ``ROWSxCOLS``."""
    if text in ("auto", "off"):
        return text
    rows, sep, cols = text.lower().partition("x")
    if not sep or not rows.isdigit() or not cols.isdigit() or int(rows) < 1 or int(cols) < 1:
        raise UsageError(f"--pixel-grid takes auto, off or ROWSxCOLS (e.g. 16x16), got {text!r}")
    return int(rows), int(cols)
