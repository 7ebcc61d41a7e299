"""Process-group plumbing for ``torchrun``: one process per device, gloo on CPU, NCCL on CUDA.

Outside ``torchrun`` (no ``WORLD_SIZE`` in the environment, or 1) everything here is a no-op, so the same code runs
single-process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # True when this module created the process group (and so must destroy it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistContext:
    """Join the process group ``torchrun`` describes in the environment, if any."""
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 or not dist.is_available():
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, owns_group=owns)


def shutdown(ctx: DistContext) -> None:
    import torch.distributed as dist

    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(ctx: DistContext, tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes (in place); unchanged in a single process."""
    if ctx.enabled:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()
