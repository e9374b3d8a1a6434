"""Data-parallel training on PyTorch's own engine, launched by ``torchrun``.

``torchrun --nproc-per-node N -m imagefit train ...`` sets ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``; :func:`setup` then joins the process group (NCCL on GPUs, gloo on
CPUs). Everything else follows from three rules:

* every rank sees the same global order of samples (a ``DistributedSampler``
  over one seeded permutation), so N ranks with batch B/N step through exactly
  the batches one process with batch B would;
* metrics are summed across ranks before callbacks see them, so early stopping
  and learning-rate decisions are identical everywhere;
* only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import invalid


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only one that writes files and prints progress."""
        return self.rank == 0


def setup(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun; a no-op otherwise.

    Args:
        device: The device type decides the backend (``nccl`` for CUDA, ``gloo`` for CPU).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local)


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """Each rank's own GPU (``cuda:LOCAL_RANK``), or the CPU."""
    if device.type == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return device


def per_rank_batch(global_batch: int, info: DistInfo) -> int:
    """Split the global batch evenly; refuse a split that would change the math."""
    if global_batch % info.world_size:
        raise invalid(
            f"batch_size for {info.world_size} processes",
            global_batch,
            "a multiple of the number of processes (the global batch is split evenly)",
        )
    return global_batch // info.world_size


def sum_across(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sum a few numbers over all ranks (identity when not distributed)."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op when not distributed)."""
    if info.enabled:
        dist.barrier()


def teardown(info: DistInfo) -> None:
    """Leave the process group."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
