"""Data-parallel context for torchrun (docs/design/architecture.md: rank and world size from the environment).

`torchrun --nproc_per_node K -m diffseg.cli train ...` sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT; a plain run has none of them and is rank 0 of 1. Backend: nccl on
CUDA, gloo on CPU. Only rank 0 writes files; every rank evaluates its share (runs/scoring.py).
A collective that waits longer than TIMEOUT fails the run instead of hanging it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from diffseg.core.errors import DiffsegError


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


M = TypeVar("M", bound=torch.nn.Module)

# How long a rank waits in a collective for the others (torch's default: 10 min for nccl, 30 for
# gloo). Rank 0 alone writes checkpoints while the others wait in the next step's allreduce; a
# checkpoint of the fusion block takes seconds, so 30 min only ever ends a run that is stuck.
TIMEOUT = timedelta(minutes=30)


def from_env() -> DistEnv:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistEnv(
        rank=int(os.environ.get("RANK", "0")),
        world=world,
        local_rank=int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0"))),
    )


def init(env: DistEnv, device: torch.device) -> None:
    if env.active and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=env.rank, world_size=env.world, timeout=TIMEOUT)


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


def sync_buffers(env: DistEnv, module: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank. DDP broadcasts them at the start
    of each forward, so after a step each rank holds its own batch's update; evaluation on every rank
    must use rank 0's, the ones the checkpoint saves."""
    if env.active:
        for buf in module.buffers():
            dist.broadcast(buf, src=0)


def sync_batchnorm(env: DistEnv, model: M, device: torch.device) -> M:
    """`--sync-bn`: every BatchNorm as a SyncBatchNorm (batch statistics over all ranks), sharing the
    parameters and buffers, so the state dict, and the plain model eval/predict build, are unchanged.
    A single process has nothing to sync: the model is returned as it is."""
    if not env.active:
        return model
    if device.type != "cuda":
        raise DiffsegError("--sync-bn needs CUDA: torch's SyncBatchNorm runs only on GPUs (nccl)")
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert converted is model  # a root that is no BatchNorm is converted in place
    return model
