"""Seeded generators for every random draw (docs/design/method.md §2, determinism).

A draw is identified by its parts, e.g. (cfg.seed, content_key(image), view, "cond", t, "class3"); the seed is
`diffseg.core.seeds.derive_seed` of them (the first 8 bytes of sha256 over their repr), so it is stable across
processes and machines (unlike Python's salted hash()). Draws are made on the CPU and then moved, so a CPU and a GPU
run see the same noise.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from diffseg.core.seeds import derive_seed

# The trajectory's draws (VAE sample, eta noise) are seeded from the content of the pixels fed to
# the VAE (content_key), the view, branch, step and copy: the same image gives the same features
# whatever it is called (a cache id, a file name). Recorded in caches as `extract.seeding`.
SCHEME = "content-v1"


def generator(*parts) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(derive_seed(*parts))


def randn(shape, *parts, device=None) -> torch.Tensor:
    """float32 N(0, I) of `shape`, drawn on the CPU from generator(*parts), moved to `device`."""
    z = torch.randn(tuple(shape), generator=generator(*parts), dtype=torch.float32)
    return z if device is None else z.to(device)


def content_key(image_HW3: np.ndarray) -> str:
    """A hex digest of the exact uint8 pixels (and their shape) fed to the VAE."""
    arr = np.ascontiguousarray(image_HW3)
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()[:32]
