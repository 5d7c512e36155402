"""Shared CLI plumbing: consoles, error handling, JSON output, progress bars."""

from __future__ import annotations

import dataclasses
import functools
import json
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

__all__ = ["DataDirOpt", "DeviceOpt", "JsonOpt", "RunOpt", "cli_errors", "console", "err", "parse_grid", "print_json", "progress_bars"]

# Options several commands share, declared once so their flags and help read the same everywhere.
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
RunOpt = Annotated[str | None, typer.Option(help="Run name. Default: the latest complete run.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
DataDirOpt = Annotated[Path | None, typer.Option(help="Folder with the Fashion-MNIST IDX files.")]

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
        except KeyboardInterrupt:
            err.print("[red]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


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


def parse_grid(text: str) -> str | tuple[int, int]:
    """``--pixel-grid``: ``auto``, ``off`` or ``ROWSxCOLS``."""
    if text in ("auto", "off"):
        return text
    rows, sep, cols = text.lower().partition("x")
    if not sep or not rows.isdigit() or not cols.isdigit() or int(rows) < 1 or int(cols) < 1:
        raise UsageError(f"--pixel-grid takes auto, off or ROWSxCOLS (e.g. 16x16), got {text!r}")
    return int(rows), int(cols)
