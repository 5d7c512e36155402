"""Checkpoints of a long ingest, so that a killed one continues where it stopped (``--resume``).

Under ``$DEEPATLAS_HOME/resume/<run name>/``: ``meta.json`` (what the ingest is: model hash,
data, settings, and how far it got; plain JSON, so ``deepatlas runs list`` reads it without
torch) and one file per stage and process, ``<stage>.rank<r>.pt``, holding the stage's
accumulators (co-moments, confusion, pixel statistics, class sums, images done). A stage's
file is replaced atomically (written beside it, then renamed), at most every
``every_seconds`` and at each stage's end, so a kill loses at most that much work and never
leaves a half-written file. Files hold tensors and numbers only and are read with
``torch.load(weights_only=True)``: no code runs. The folder is removed when the run is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from deepatlas.errors import UsageError
from deepatlas.paths import home_dir

__all__ = ["ResumeState", "resumable_runs", "resume_root"]


def resume_root() -> Path:
    return home_dir() / "resume"


def resumable_runs() -> list[dict[str, Any]]:
    """Every partial ingest under :func:`resume_root` that saved some work, from its ``meta.json``
    (torch-free; an ingest stopped before its first save leaves nothing to continue)."""
    root = resume_root()
    out: list[dict[str, Any]] = []
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        if not any(d.glob("*.pt")):
            continue
        try:
            meta = json.loads((d / "meta.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict):
            out.append(meta)
    return out


class ResumeState:
    """One ingest's checkpoints (see the module docstring).

    Parameters
    ----------
    name : str
        The run's name (its folder).
    fingerprint : dict
        What must be equal for a checkpoint to be continued (model hash, data, settings).
    resume : bool
        Continue from the checkpoints found; without it, existing checkpoints are refused
        (they may hold hours of work) unless ``restart``.
    restart : bool
        Discard existing checkpoints and start over.
    rank : int
        This process's rank (each process keeps its own files; a resumed job needs the same
        number of processes, part of the fingerprint).
    every_seconds : float, default 60
        Least time between two saves of a stage in progress (``$DEEPATLAS_CHECKPOINT_SECONDS``).
    """

    def __init__(self, name: str, fingerprint: dict[str, Any], *, resume: bool = False, restart: bool = False,
                 rank: int = 0, every_seconds: float | None = None) -> None:
        self.dir = resume_root() / name
        self.name, self.rank, self.fingerprint = name, rank, fingerprint
        env = os.environ.get("DEEPATLAS_CHECKPOINT_SECONDS")
        self.every = float(env) if env is not None else (60.0 if every_seconds is None else every_seconds)
        self._last = time.monotonic()
        meta = self._meta()
        if meta is not None and not any(self.dir.glob("*.pt")):
            meta = None  # stopped before anything was saved: nothing to continue
        if meta is not None and not resume and not restart:
            raise UsageError(f"run {name!r} has a partial ingest ({self._describe(meta)}); pass --resume to continue it "
                             "or --restart to discard it")
        if meta is not None and resume and not restart and meta.get("fingerprint") != fingerprint:
            changed = sorted(k for k in set(fingerprint) | set(meta.get("fingerprint", {}))
                             if fingerprint.get(k) != meta.get("fingerprint", {}).get(k))
            raise UsageError(f"the partial ingest of run {name!r} was made with other settings ({', '.join(changed)}); "
                             "run the same command as before, or pass --restart to discard it")
        if rank == 0 and (meta is None or restart):
            shutil.rmtree(self.dir, ignore_errors=True)
        self.resumed = meta is not None and resume and not restart
        self.dir.mkdir(parents=True, exist_ok=True)
        if rank == 0 and not self.resumed:
            self.note(stage="start", images_done=0)

    def _meta(self) -> dict[str, Any] | None:
        try:
            meta = json.loads((self.dir / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    @staticmethod
    def _describe(meta: dict[str, Any]) -> str:
        done, total = meta.get("images_done"), meta.get("images")
        where = f"stage {meta.get('stage')}" + (f", {done:,} of {total:,} images" if done is not None and total else "")
        age = time.time() - float(meta.get("updated", time.time()))
        return f"{where}, saved {age / 60:.0f} min ago"

    def note(self, **progress: Any) -> None:
        """Update ``meta.json`` (rank 0): the fingerprint plus how far the ingest got."""
        if self.rank != 0:
            return
        meta = self._meta() or {"run": self.name, "fingerprint": self.fingerprint, "started": time.time()}
        meta.update(progress, updated=time.time(), images=self.fingerprint.get("images"))
        tmp = self.dir / "meta.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, self.dir / "meta.json")

    def path(self, name: str) -> Path:
        """A file of this process inside the checkpoint folder (e.g. the spilled node values)."""
        return self.dir / f"{name}.rank{self.rank}"

    def _file(self, stage: str) -> Path:
        return self.dir / f"{stage}.rank{self.rank}.pt"

    def due(self) -> bool:
        """Whether a stage in progress should save now (``every_seconds`` have passed)."""
        return time.monotonic() - self._last >= self.every

    def save(self, stage: str, payload: dict[str, Any], **progress: Any) -> None:
        """Replace ``stage``'s checkpoint with ``payload`` (tensors, numbers, strings, lists)."""
        import torch

        target = self._file(stage)
        tmp = target.with_name(target.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, target)
        self._last = time.monotonic()
        self.note(stage=stage, **progress)

    def load(self, stage: str) -> dict[str, Any] | None:
        """``stage``'s checkpoint, or None (not resumed, or the stage had not saved)."""
        if not self.resumed:
            return None
        import torch

        target = self._file(stage)
        if not target.is_file():
            return None
        data = torch.load(target, map_location="cpu", weights_only=True)
        return data if isinstance(data, dict) else None

    def finish(self) -> None:
        """The run is complete: remove the checkpoints."""
        if self.rank == 0:
            shutil.rmtree(self.dir, ignore_errors=True)
