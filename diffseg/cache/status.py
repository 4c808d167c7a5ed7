"""The per-sample completion marker: `status` [N] uint8, one 1-byte chunk per sample.

0 pending (the fill value: no chunk file), 1 complete (written after all of the sample's
arrays), 2 skipped (a bad sample, its reason in attrs["skipped"]). Reading all N markers
through zarr's array API is one asyncio task per chunk; on a local store we list the
chunk folder and read the few files that exist instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from diffseg.cache.store import plain_bytes


def read_all(array: zarr.Array, root: Path | None) -> np.ndarray:
    """-> np.uint8[N] status of every sample."""
    n = array.shape[0]
    if root is None or not plain_bytes(array) or array.metadata.encode_chunk_key((0,)) != "c/0":
        return np.asarray(array[:], dtype=np.uint8)
    out = np.zeros(n, np.uint8)
    folder = root / array.path / "c"
    if not folder.is_dir():  # nothing written yet
        return out
    for entry in folder.iterdir():
        if entry.name.isdigit() and int(entry.name) < n:
            data = entry.read_bytes()
            out[int(entry.name)] = data[0] if data else 0
    return out


def read_one(array: zarr.Array, root: Path | None, i: int) -> int:
    if root is None or not plain_bytes(array):
        return int(np.asarray(array[i]))
    try:
        data = (root / array.path / array.metadata.encode_chunk_key((i,))).read_bytes()
    except FileNotFoundError:
        return 0
    return data[0] if data else 0
