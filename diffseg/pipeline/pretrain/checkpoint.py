"""Resumable training state: one file per phase, written atomically.

A checkpoint holds plain tensors and numbers (module, optimizer and LR-schedule state
dicts, the step), loaded with `weights_only=True`: nothing arbitrary is unpickled. Every
random draw of a step is seeded by (seed, phase, step), so a resumed run takes exactly the
steps an uninterrupted one would.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


def save(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # a kill mid-write leaves the previous checkpoint intact


def load(path: Path) -> dict | None:
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None


def step_generator(seed: int, phase: int, step: int) -> torch.Generator:
    """The torch generator of one training step (noise, timesteps, posterior samples)."""
    return torch.Generator().manual_seed(hash_seed(seed, phase, step))


def hash_seed(seed: int, phase: int, step: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence((seed, phase, step)).generate_state(2, np.uint64)[0] >> 1)
