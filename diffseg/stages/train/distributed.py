"""Data-parallel context for torchrun (DESIGN.md: rank and world size from the environment).

`torchrun --nproc_per_node K -m diffseg.cli train ...` sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT; a plain run has none of them and is rank 0 of 1. Backend: nccl on
CUDA, gloo on CPU. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True, kw_only=True)
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def from_env() -> DistEnv:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistEnv(
        rank=int(os.environ.get("RANK", "0")),
        world=world,
        local_rank=int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0"))),
    )


def init(env: DistEnv, device: torch.device) -> None:
    if env.active and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=env.rank, world_size=env.world)


def shutdown(env: DistEnv) -> None:
    if env.active and dist.is_initialized():
        dist.destroy_process_group()


def broadcast(env: DistEnv, obj):
    """Rank 0's value of a picklable object, on every rank."""
    if not env.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
