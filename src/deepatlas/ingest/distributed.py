"""More than one process through torch.distributed: who am I, and merging what we each counted.

``torchrun --nproc-per-node N -m deepatlas ingest ...`` (or ``deepatlas ingest --nproc N``,
which runs that) starts N copies of the command; torchrun sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous (``MASTER_ADDR``/``MASTER_PORT``, or ``--rdzv-endpoint``
across machines). :func:`from_env` joins the process group (NCCL on GPUs, gloo on CPUs), and
each process then reads every world-th image (:meth:`deepatlas.data.base.ImageSet.batches`'s
``shard``), accumulates on its own device and merges with the others through
:meth:`Dist.all_reduce_`; only rank 0 talks to Neo4j. Without torchrun's variables everything
is one process and every method here is free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from deepatlas.errors import DeepAtlasError, UsageError

__all__ = ["SINGLE", "Dist", "from_env"]


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: ``rank`` of ``world`` (1: no torch.distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Whether this process writes, prints and draws (rank 0)."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int] | None:
        """``(rank, world)`` for :meth:`ImageSet.batches`, None for one process."""
        return (self.rank, self.world) if self.world > 1 else None

    def all_reduce_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over the processes, in place (every process gets the sum)."""
        if self.world > 1:
            torch.distributed.all_reduce(t)
        return t

    def total(self, value: float) -> float:
        """A number summed over the processes."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=_device())
        torch.distributed.all_reduce(t)
        return float(t.item())

    def agree(self, error: DeepAtlasError | None) -> None:
        """Raise on every process when any one failed a check (so none waits for the others in a
        collective), with rank 0's own message where it has one."""
        if self.world == 1:
            if error is not None:
                raise error
            return
        failed = self.total(1.0 if error is not None else 0.0)
        if error is not None:
            raise error
        if failed:
            raise UsageError("another process of this torchrun job refused to start (its message is above)")

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


SINGLE = Dist()


def _device() -> torch.device:
    backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else "gloo"
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


def from_env(device: torch.device | None = None) -> Dist:
    """Join torchrun's process group when its variables are set; else :data:`SINGLE`.

    The backend is NCCL when this process computes on a GPU (``device``), gloo otherwise; each
    process takes GPU ``LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return SINGLE
    rank = int(os.environ.get("RANK", "0"))
    if not torch.distributed.is_available():
        raise UsageError("this torch build has no torch.distributed; run one process")
    if not torch.distributed.is_initialized():
        cuda = device is not None and device.type == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank, world)
