"""Seeded sample order, split of each global batch across processes, per-sample dropout seeds.

The order is a pure function of (seed, position): epoch e is a permutation of the N
samples drawn from `torch.Generator().manual_seed(seed + e)`, and the epochs are
concatenated into one stream. Iteration k consumes stream positions
[k * G, (k + 1) * G) with G = batch * accum * world; those G positions are cut into
world * accum micro-batches of `batch`, and rank r takes micro-batches
r * accum .. r * accum + accum - 1. So a resumed run needs only k to continue
exactly, and 2 processes x 1 micro-batch see the same samples as 1 process x 2.

The dropout seed of a sample is a function of (seed, stream position, branch): it does
not depend on batch placement, so the same sample gets the same mask under DDP and
under gradient accumulation.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class StreamOrder:
    """Position in the sample stream -> sample index (permutations cached per epoch)."""

    def __init__(self, n: int, seed: int):
        assert n > 0, "empty dataset"
        self.n, self.seed = n, seed
        self._perms: dict[int, list[int]] = {}

    def __getitem__(self, pos: int) -> int:
        epoch, i = divmod(pos, self.n)
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g).tolist()}  # keep one epoch
        return self._perms[epoch][i]


def micro_positions(k: int, a: int, *, batch: int, accum: int, rank: int, world: int) -> range:
    """Stream positions of micro-batch a (0 <= a < accum) of iteration k on this rank."""
    g = batch * accum * world
    start = k * g + (rank * accum + a) * batch
    return range(start, start + batch)


def dropout_seeds(positions: range, *, seed: int, branch: int) -> torch.Tensor:
    """int64 [B] seeds, distinct per (seed, position, branch)."""
    return torch.tensor([(seed * 1_000_003 + p) * 4 + branch for p in positions], dtype=torch.int64)


class MicroBatchSampler(Sampler):
    """Yields this rank's micro-batches (lists of sample indices) from iteration `start` to `stop`."""

    def __init__(self, n: int, *, seed: int, batch: int, accum: int, rank: int, world: int, start: int, stop: int):
        self.order = StreamOrder(n, seed)
        self.batch, self.accum, self.rank, self.world = batch, accum, rank, world
        self.start, self.stop = start, stop

    def __iter__(self):
        for k in range(self.start, self.stop):
            for a in range(self.accum):
                pos = micro_positions(k, a, batch=self.batch, accum=self.accum, rank=self.rank, world=self.world)
                yield [self.order[p] for p in pos]

    def __len__(self) -> int:
        return (self.stop - self.start) * self.accum
