"""Writing one sample's chunk of one array, without zarr's array API (the writer's fast path).

`array[i] = value` costs a fixed ~1-3 ms per call on the 2-core VM (indexing, a hop to zarr's
asyncio thread and back, a copy), i.e. ~6 ms per small sample of five arrays, where the bytes
take microseconds: cProfile of CacheWriter.write_sample spent 75-95 % waiting on that thread.
The cache keeps one chunk per sample, so a sample's array is exactly one chunk file; for a
local store whose codec pipeline `store.chunk_layout` knows (little-endian bytes, maybe
bitround's mantissa rounding, maybe zstd, maybe a crc32c trailer) we encode the chunk ourselves
and write the very bytes zarr would (tests/test_cache_chunkwrite.py compares them), atomically
as zarr's LocalStore does: a temporary file in the same folder, then a rename
(diffseg.core.atomic). Any other codec or an fsspec URL: None, and the caller uses zarr's array
API.

A pack (packs.py) is the layers of one stride side by side on the channel axis: `write_pieces`
takes the layers' arrays as they are and writes the chunk as a gather of their per-step slabs
(the crc32c extended piece by piece), without building the concatenated array first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import zarr
from numcodecs import BitRound, Zstd
from zarr.codecs import ZstdCodec

from diffseg.cache.store import _codecs, chunk_layout
from diffseg.core.atomic import atomic_write


class ChunkWriter:
    """Writes whole per-sample chunks of one array of a local store: `write(i, value)`."""

    def __init__(self, array: zarr.Array, root: Path, layout: tuple[str, bool]):
        self.shape, self.dtype = tuple(array.shape[1:]), np.dtype(array.dtype).newbyteorder("<")
        self.zeros = (0,) * (len(array.shape) - 1)
        self.encode_key = array.metadata.encode_chunk_key
        self.dir = str(root / array.path)  # str paths: pathlib's overhead showed on kilobyte chunks
        mode, self.crc = layout
        self.zstd = None
        first = _codecs(array)[0]
        keepbits = (
            first.codec_config.get("keepbits") if getattr(first, "codec_name", "") == "numcodecs.bitround" else None
        )
        self.round = BitRound(keepbits=int(keepbits)) if keepbits is not None else None
        if mode == "zstd":
            codec = next(c for c in _codecs(array) if isinstance(c, ZstdCodec))
            self.zstd = Zstd(level=codec.level, checksum=codec.checksum)

    def file(self, i: int) -> str:
        return f"{self.dir}/{self.encode_key((i, *self.zeros))}"

    def write(self, i: int, value: np.ndarray, exact: bool = False) -> None:
        """Sample i's chunk := value (the per-sample shape; cast to the array's little-endian dtype)."""
        data = np.asarray(value, dtype=self.dtype)
        if not data.flags.c_contiguous:
            data = data.copy(order="C")
        assert data.shape == self.shape, f"{data.shape} != {self.shape}"
        if self.round is not None and not exact:  # bitround: zarr's array-to-array codec, as zarr applies it
            data = np.asarray(self.round.encode(data)).view(self.dtype).reshape(self.shape)
        # numpy arrays and bytes, as google_crc32c takes them (not memoryviews)
        body = self.zstd.encode(data) if self.zstd is not None else data.reshape(-1).view(np.uint8)
        self._put(i, [body])

    def write_pieces(self, i: int, pieces: list[np.ndarray], exact: bool = False) -> None:
        """Sample i's chunk := the pieces [S, c_j, ...] side by side on axis 1 (a pack's layers); `exact`:
        values already stored once, written as they are (bitround's rounding not applied again: format-2
        code wrote local bitround chunks unrounded, and a migration must not change a value)."""
        if len(pieces) == 1 or self.zstd is not None or self.round is not None:
            self.write(i, pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1), exact)
            return
        arrays = [np.ascontiguousarray(p, dtype=self.dtype) for p in pieces]
        assert sum(a.shape[1] for a in arrays) == self.shape[1], "pieces do not fill the pack"
        # row-major [S, C, ...]: step s of every piece in turn
        self._put(i, [a[s].reshape(-1).view(np.uint8) for s in range(self.shape[0]) for a in arrays])

    def _put(self, i: int, body: list[Any]) -> None:
        """The chunk file := the body's buffers, then (crc32c pipelines) the checksum of them all."""
        parts: list[Any] = list(body)  # buffers (numpy's stubs type arrays as buffers only from Python 3.12)
        if self.crc:
            crc = 0
            for b in body:
                crc = google_crc32c.extend(crc, b)
            parts.append(int(crc).to_bytes(4, "little"))
        atomic_write(self.file(i), parts)


def chunk_writer(array: zarr.Array, root: Path | None) -> ChunkWriter | None:
    """A ChunkWriter for `array` when its store is local (`root`) and its codecs are known, else None."""
    if root is None:
        return None
    layout = chunk_layout(array)
    if layout is None:
        return None
    if layout[0] == "zstd" and next(c for c in _codecs(array) if isinstance(c, ZstdCodec)).checksum:
        return None  # zstd's own frame checksum: left to zarr
    return ChunkWriter(array, root, layout)
