"""Reading one sample's chunk of one array, faster than zarr's array API.

zarr-python's array path costs a fixed overhead per call (metadata, asyncio, indexing,
an extra copy) that reaches only 6-40 % of a raw read on this machine. The cache keeps
one chunk per sample, so a sample is exactly one chunk file per array; for a local store
with a codec we know we read that file ourselves:

- bytes codec (features): `readinto` a preallocated numpy array, no copy at all; a step
  subset reads only those steps' slabs (S is the outermost axis of a chunk).
- bytes + zstd (labels): read the file, decode with numcodecs' zstd into the output.
- anything else (another codec, an fsspec URL): zarr's array API.

Packs (packs.py) hold several layers side by side on the channel axis: `read_slabs` reads a
layer's slab of channels, at each wanted step one contiguous run of the file, so a layer subset
reads only its own bytes. The runs go straight into the output arrays with os.preadv, neighbouring
runs in one call (every layer of a pack: one call for the whole file, no copy). A sample's first
read in a process reads its whole chunk once to check the crc32c, then copies the slabs out.

Checksums: caches made since the crc32c codec (store.py) end every chunk with a crc32c of
its bytes. zstd chunks are checked on every read (small labels); a raw feature chunk is
checked on its first read in this process (readinto, then the 4 trailing bytes; the checksum
runs at ~2.5x the speed of the read), later reads skip the trailer. A mismatch is a
CorruptChunk naming the file; caches without checksums read as before.

A missing chunk file is a MissingChunk error, never the fill value zarr would return: the
writer writes every chunk of a sample (even one equal to the fill value) before its status
marker, so a sample marked complete without one lost it (a deleted file, a bad copy). The local
paths learn it from the open's FileNotFoundError (no extra call); zarr's path (another codec, an
fsspec URL) asks the store whether the chunk exists before reading it. The on-disk format stays
plain Zarr; only the way we fetch it differs.

Memory: each sample is megabytes of fresh arrays. glibc serves blocks > 128 KiB with
mmap and returns freed memory to the kernel, so every sample page-faults its arrays in
again (on the 2-core VM: 10 us per 4 KiB page, reads at ~0.5 GB/s instead of ~2.5 GB/s).
`keep_freed_memory` raises glibc's mmap/trim thresholds once per process (as
MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ would), so freed sample buffers are reused;
the process keeps its peak heap instead of shrinking. It changes the whole process's
allocator, so the library never calls it on its own (not at import, not in CacheReader):
the commands that read caches sample after sample call it first (`train`, `eval`, `ablate`'s
cells, `cache verify`), and a library caller who wants the same speed calls it too.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import google_crc32c
import numpy as np
import zarr
from numcodecs import Zstd
from zarr.core.sync import sync

from diffseg.cache.store import chunk_layout
from diffseg.core.errors import DiffsegError

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_IOV_MAX = 1024  # buffers per preadv call (Linux's IOV_MAX)
_TUNED = False
_ZSTD = Zstd()  # decoding needs no level; one instance per process


def keep_freed_memory() -> bool:
    """Keep freed blocks up to 32 MiB in the heap for reuse (glibc only), for the rest of the
    process (see the module docstring: an explicit choice of the command); -> whether applied."""
    global _TUNED
    if not _TUNED and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6")
        except OSError:  # not glibc (e.g. musl): nothing to tune, reads are just slower
            return False
        _TUNED = bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    return _TUNED


class ChunkSource:
    """Sample i of one [N, ...] array chunked (1, ...): read(i) -> np.ndarray[...]."""

    def __init__(self, array: zarr.Array, root: Path | None, holds: Sequence[str] = ()):
        assert array.chunks == (1, *array.shape[1:]), f"{array.path}: not one chunk per sample"  # expected.py
        self.array = array
        self.name = array.path
        self._holds = f" (it holds {', '.join(holds)})" if holds else ""  # a pack: the feature arrays in it
        self.shape = tuple(array.shape[1:])
        self.dtype = np.dtype(array.dtype)
        self.fill = array.fill_value
        self.dir = root / array.path if root is not None else None
        little = sys.byteorder == "little" or self.dtype.itemsize == 1
        layout = chunk_layout(array) if self.dir is not None and little else None
        self.mode, self.crc = layout if layout is not None else ("zarr", False)
        self._checked: set[int] = set()  # raw chunks whose checksum held in this process
        self._plans: dict[tuple, list] = {}  # read_slabs' run plans by (slabs, steps)
        self._zeros = (0,) * len(self.shape)
        self._template = self._key_template()

    def _key_template(self) -> tuple[str, str] | None:
        """("<dir>/c/", "/0/0/0/0") when the chunk key of sample i is that with i between
        (zarr's default encoding): building the path is then one f-string, not pathlib."""
        if self.dir is None:
            return None
        encode = self.array.metadata.encode_chunk_key
        head, _, tail = encode((0, *self._zeros)).partition("0")
        if encode((1234, *self._zeros)) != f"{head}1234{tail}":
            return None
        return f"{self.dir}/{head}", tail

    def file(self, i: int) -> Path:
        """Path of sample i's chunk file."""
        return Path(self._file(i))

    def _file(self, i: int) -> str:
        """file(i) as a str: cheaper than pathlib on the hot path."""
        assert self.dir is not None
        if self._template is not None:
            return f"{self._template[0]}{i}{self._template[1]}"
        return str(self.dir / self._key(i))

    def read(self, i: int, steps: Sequence[int] | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """The sample's array; `steps` selects along its first axis (the saved steps);
        `out` (C-contiguous, the result's shape and dtype) receives it without a copy."""
        if self.mode == "raw":
            return self._read_raw(i, steps, out)
        if self.mode == "zstd" and steps is None and out is not None:
            return self._read_zstd(i, out)  # decoded straight into `out` (a loader's batch slot)
        arr = self._read_zstd(i) if self.mode == "zstd" else self._read_zarr(i)
        arr = arr if steps is None else arr[list(steps)]
        if out is None:
            return np.ascontiguousarray(arr)
        out[...] = arr
        return out

    def read_slabs(
        self,
        i: int,
        slabs: Sequence[tuple[int, int]],
        steps: Sequence[int] | None = None,
        outs: Sequence[np.ndarray | None] | None = None,
    ) -> list[np.ndarray]:
        """Channels [offset, offset + width) of sample i's chunk [S, C, ...] for each (offset, width)
        of `slabs`, as [S', width, ...] arrays (`steps` selects S'); `outs` receive them in place."""
        S, C, *rest = self.shape
        picked = list(range(S)) if steps is None else [int(s) for s in steps]
        if any(not 0 <= s < S for s in picked):
            raise DiffsegError(f"{self.name}: steps {picked} outside the {S} saved steps of its samples")
        outs = list(outs) if outs is not None else [None] * len(slabs)
        shapes = [(len(picked), w, *rest) for _, w in slabs]
        result = [np.empty(shape, self.dtype) if o is None else o for shape, o in zip(shapes, outs)]
        for o, shape in zip(result, shapes):
            assert o.shape == shape and o.dtype == self.dtype and o.flags.c_contiguous, "bad out array"
        if not picked:
            return result  # nothing to read (an empty step selection)
        if len(slabs) == 1 and slabs[0] == (0, C):
            return [self.read(i, steps, result[0])]
        checking = self.crc and i not in self._checked
        if self.mode != "raw" or checking or len(set(picked)) != len(picked):  # whole chunk (checked), copies
            whole = self.read(i)
            for (offset, w), o in zip(slabs, result):
                o[...] = whole[picked, offset : offset + w]
            return result
        self._scatter(i, self._runs(slabs, picked, result))
        return result

    def _runs(self, slabs, picked: list[int], result: list[np.ndarray]) -> list[tuple[int, list[memoryview]]]:
        """The reads of `slabs` at steps `picked` into `result`: (file offset, buffers) per contiguous
        stretch of the chunk file, in file order (a layer at a step is one run; neighbours merge). The
        plan is made once per (slabs, steps) and kept: a training read asks the same every sample."""
        key = (tuple(slabs), tuple(picked))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._plan(slabs, picked)
        views = [_bytes_of(r) for r in result]
        return [(start, [views[k][lo:hi] for k, lo, hi in pieces]) for start, pieces in plan]

    def _plan(self, slabs, picked: list[int]) -> list[tuple[int, list[tuple[int, int, int]]]]:
        """(file offset, [(slab k, first byte, end byte in result[k])]) per contiguous stretch."""
        S, C, *rest = self.shape
        plane = int(np.prod(rest, dtype=np.int64)) * self.dtype.itemsize
        where = {s: j for j, s in enumerate(picked)}
        order = sorted(range(len(slabs)), key=lambda k: slabs[k][0])
        plan: list[tuple[int, list[tuple[int, int, int]]]] = []
        end = -1
        for s in range(S):
            j = where.get(s)
            if j is None:
                continue
            for k in order:
                offset, width = slabs[k]
                start, size = (s * C + offset) * plane, width * plane
                if start != end:
                    plan.append((start, []))
                plan[-1][1].append((k, j * size, (j + 1) * size))
                end = start + size
        return plan

    def _scatter(self, i: int, runs: list[tuple[int, list[memoryview]]]) -> None:
        """os.preadv each run's buffers (no copy, one call per contiguous stretch, IOV_MAX at a time)."""
        got = want = 0
        try:
            fd = os.open(self._file(i), os.O_RDONLY)
        except FileNotFoundError:
            raise self._missing(i) from None
        try:
            for start, buffers in runs:
                for k in range(0, len(buffers), _IOV_MAX):
                    part = buffers[k : k + _IOV_MAX]
                    got += os.preadv(fd, part, start)
                    size = sum(b.nbytes for b in part)
                    want += size
                    start += size
        finally:
            os.close(fd)
        if got != want:
            raise DiffsegError(f"{self.file(i)}: chunk file is truncated ({got} of {want} bytes read)")

    def _read_raw(self, i: int, steps: Sequence[int] | None, out: np.ndarray | None) -> np.ndarray:
        picked = None if steps is None else list(steps)
        shape = self.shape if picked is None else (len(picked), *self.shape[1:])
        if out is None:
            out = np.empty(shape, self.dtype)
        assert out.shape == shape and out.dtype == self.dtype and out.flags.c_contiguous, "bad out array"
        try:
            with open(self._file(i), "rb", buffering=0) as f:
                if self.crc and i not in self._checked:
                    got, want = self._fill_checked(i, f, out, picked)
                else:
                    got, want = self._fill_from(f, out, picked)
        except FileNotFoundError:
            raise self._missing(i) from None
        if got != want:
            raise DiffsegError(f"{self.file(i)}: chunk file is truncated ({got} of {want} bytes read)")
        return out

    def _fill_checked(self, i: int, f, out: np.ndarray, steps: list[int] | None) -> tuple[int, int]:
        """Read the whole chunk (into `out`, or a scratch array for a step subset), check its crc32c."""
        whole = out if steps is None else np.empty(self.shape, self.dtype)
        got = f.readinto(_bytes_of(whole))
        if got == whole.nbytes:
            self._check(i, whole, f.read(5))
            if steps is not None:
                out[...] = whole[steps]
        return (got, whole.nbytes)

    def _check(self, i: int, data: np.ndarray | bytes, trailer: bytes) -> None:
        stored = int.from_bytes(trailer, "little") if len(trailer) == 4 else None
        if stored is None or google_crc32c.value(data) != stored:
            raise CorruptChunk(f"{self.file(i)}{self._holds}: chunk file fails its crc32c checksum (corrupt on disk)")
        self._checked.add(i)

    @staticmethod
    def _fill_from(f, out: np.ndarray, steps: list[int] | None) -> tuple[int, int]:
        """readinto `out` the whole chunk, or the slabs of `steps` -> (bytes got, bytes wanted)."""
        if steps is None or not steps:
            return f.readinto(_bytes_of(out)), out.nbytes
        slab = out[0].nbytes
        if steps == list(range(steps[0], steps[0] + len(steps))):  # one contiguous read
            f.seek(steps[0] * slab)
            return f.readinto(_bytes_of(out)), out.nbytes
        got = 0
        for j, s in enumerate(steps):
            f.seek(s * slab)
            got += f.readinto(_bytes_of(out[j]))
        return got, slab * len(steps)

    def _missing(self, i: int) -> MissingChunk:
        if self.dir is not None:
            return MissingChunk(f"its {self.name} chunk file {self.file(i)}{self._holds} is missing")
        return MissingChunk(f"its {self.name} chunk {self._key(i)}{self._holds} is missing from the store")

    def _key(self, i: int) -> str:
        return self.array.metadata.encode_chunk_key((i, *self._zeros))

    def _read_zarr(self, i: int) -> np.ndarray:
        if not sync((self.array.store_path / self._key(i)).exists()):  # zarr reads the fill value
            raise self._missing(i)
        try:
            return np.asarray(self.array[i])
        except ValueError as err:  # zarr's crc32c codec: "Stored and computed checksum do not match"
            raise CorruptChunk(f"{self.name}, chunk {i}{self._holds}: {err}") from err

    def _read_zstd(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = np.empty(self.shape, self.dtype)
        assert out.shape == self.shape and out.dtype == self.dtype and out.flags.c_contiguous, "bad out array"
        try:
            with open(self._file(i), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise self._missing(i) from None
        if self.crc:
            self._check(i, data[:-4], data[-4:])
            data = data[:-4]
        _ZSTD.decode(data, out=_bytes_of(out))
        return out


class CorruptChunk(DiffsegError):
    """A chunk file whose bytes fail their checksum."""


class MissingChunk(DiffsegError):
    """A chunk a sample needs is not in the store (the reader names the cache and the sample)."""


def _bytes_of(arr: np.ndarray) -> memoryview:
    """A writable byte view of a C-contiguous array (readinto and the zstd decoder fill it in place)."""
    return arr.data.cast("B")
