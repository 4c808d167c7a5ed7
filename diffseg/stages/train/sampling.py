"""Seeded sample order, split of each global batch across processes, per-sample dropout seeds.

The order is a pure function of (seed, position). Uniform sampling: epoch e is a permutation
of the N *images* drawn from `torch.Generator().manual_seed(seed + e)`, the epochs
concatenated into one stream; an image with several cached views ("<id>#v<k>") gives one of
them per visit, drawn from (seed, position), so K views are K-fold augmentation and an epoch
is over images (with one view per image: the plain permutation of the samples). Rare-class
sampling (rcs.py) replaces the permutation by a class draw, also from (seed, position). Iteration k consumes stream positions
[k * G, (k + 1) * G) with G = batch * accum * world; those G positions are cut into
world * accum micro-batches of `batch`, and rank r takes micro-batches
r * accum .. r * accum + accum - 1. So a resumed run needs only k to continue
exactly, and 2 processes x 1 micro-batch see the same samples as 1 process x 2.

The dropout seed of a sample is a function of (seed, stream position, branch): it does
not depend on batch placement, so the same sample gets the same mask under DDP and
under gradient accumulation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Sampler

from diffseg.cache.schema import image_of

VIEW_DRAW, CLASS_DRAW, FLIP_DRAW = 1, 2, 3  # what a per-position generator is for (part of its seed)


def image_groups(ids: Sequence[str]) -> list[list[int]]:
    """Positions of `ids` grouped by image (the id without its "#v<k>"), images in first-seen order."""
    groups: dict[str, list[int]] = {}
    for pos, sample_id in enumerate(ids):
        groups.setdefault(image_of(sample_id), []).append(pos)
    return list(groups.values())


def position_rng(seed: int, pos: int, purpose: int) -> np.random.Generator:
    """The generator of one stream position for one purpose (independent of batch placement)."""
    return np.random.default_rng([seed, pos, purpose])


class Order(Protocol):
    def __getitem__(self, pos: int) -> int: ...


class StreamOrder:
    """Position in the sample stream -> sample position (image permutations cached per epoch).

    `groups`: the samples of each image (default: every sample its own image)."""

    def __init__(self, n: int, seed: int, groups: Sequence[Sequence[int]] | None = None):
        assert n > 0, "empty dataset"
        self.groups = [list(g) for g in groups] if groups is not None else [[i] for i in range(n)]
        assert sorted(i for g in self.groups for i in g) == list(range(n)), "groups must partition the samples"
        self.n, self.seed = len(self.groups), seed
        self._perms: dict[int, list[int]] = {}

    def __getitem__(self, pos: int) -> int:
        epoch, i = divmod(pos, self.n)
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g).tolist()}  # keep one epoch
        views = self.groups[self._perms[epoch][i]]
        if len(views) == 1:
            return views[0]
        return views[int(position_rng(self.seed, pos, VIEW_DRAW).integers(len(views)))]


def micro_positions(k: int, a: int, *, batch: int, accum: int, rank: int, world: int) -> range:
    """Stream positions of micro-batch a (0 <= a < accum) of iteration k on this rank."""
    g = batch * accum * world
    start = k * g + (rank * accum + a) * batch
    return range(start, start + batch)


def dropout_seeds(positions: range, *, seed: int, branch: int) -> torch.Tensor:
    """int64 [B] seeds, distinct per (seed, position, branch)."""
    return torch.tensor([(seed * 1_000_003 + p) * 4 + branch for p in positions], dtype=torch.int64)


def flip_mask(positions: range, *, seed: int, p: float) -> torch.Tensor:
    """bool [B]: which samples of these stream positions are flipped (feature-space flips, probability p)."""
    if p == 0:
        return torch.zeros(len(positions), dtype=torch.bool)
    return torch.tensor([bool(position_rng(seed, q, FLIP_DRAW).random() < p) for q in positions])


class MicroBatchSampler(Sampler):
    """Yields this rank's micro-batches (lists of sample indices) from iteration `start` to `stop`."""

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        batch: int,
        accum: int,
        rank: int,
        world: int,
        start: int,
        stop: int,
        order: Order | None = None,
    ):
        self.order = order if order is not None else StreamOrder(n, seed)
        self.batch, self.accum, self.rank, self.world = batch, accum, rank, world
        self.start, self.stop = start, stop

    def __iter__(self):
        for k in range(self.start, self.stop):
            for a in range(self.accum):
                pos = micro_positions(k, a, batch=self.batch, accum=self.accum, rank=self.rank, world=self.world)
                yield [self.order[p] for p in pos]

    def __len__(self) -> int:
        return (self.stop - self.start) * self.accum
