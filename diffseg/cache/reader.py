"""CacheReader: what a cache holds, and one sample at a time out of it.

`read(i, names)` returns numpy arrays from the fast chunk path (fastread.py). Every read of a
sample (features, their codec's parts, labels, original labels) goes through `_sample(i)`, the
one completeness check: a sample whose status marker is not "complete" is refused, and one
marked complete that lacks a chunk (fastread's MissingChunk) or fails a checksum is an error
naming the cache, the array and the sample, never the fill value. Opening is cheap (attributes,
ids and the status markers); arrays are opened on first use, when their metadata is checked
against the record (expected.py). Not meant to be pickled: datasets keep the path and open a
reader in each worker process.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import zarr

from diffseg.cache import codecs, schema, status, store
from diffseg.cache.expected import array_problem
from diffseg.cache.fastread import ChunkSource, CorruptChunk, MissingChunk
from diffseg.cache.record import CacheRecord, read_record
from diffseg.cache.writer import logical_shape, read_shared
from diffseg.core.errors import DiffsegError
from diffseg.core.layers import LayerSpec


class CacheReader:
    """Read-only view of one cache."""

    @store.quiet_numcodecs()
    def __init__(self, path: str | Path):
        self.path = path
        if store.is_local(path) and not (store.local_path(path) / "zarr.json").is_file():
            raise DiffsegError(f"{path} is not a Zarr group (no zarr.json): not a diffseg cache")
        self.group = store.open_group(path, "r")
        self.record: CacheRecord = read_record(path, self.group.attrs)
        missing = [k for k in (schema.IDS, schema.STATUS) if k not in self.group]
        if missing:
            raise DiffsegError(f"{path} is a damaged cache: the {' and '.join(missing)} array is missing")
        self.ids: list[str] = [str(s) for s in np.asarray(store.array(self.group, schema.IDS)[:])]
        self.n = len(self.ids)
        self._root = store.local_path(path) if store.is_local(path) else None
        self._sources: dict[str, ChunkSource] = {}
        self._shared: dict[str, dict[str, np.ndarray]] = {}
        self.status: np.ndarray = status.read_all(store.array(self.group, schema.STATUS), self._root)  # uint8[N]

    # -- what is in it ------------------------------------------------------------------
    @property
    def branches(self) -> list[str]:
        return list(self.record.branches)

    @property
    def save_steps(self) -> list[int]:
        return list(self.record.save_steps)

    @property
    def layer_specs(self) -> dict[str, LayerSpec]:
        return dict(self.record.layers)

    @property
    @store.quiet_numcodecs()
    def is_eval(self) -> bool:
        return schema.ORIG_LABELS in self.group.array_keys()

    @property
    @store.quiet_numcodecs()
    def label_shape(self) -> tuple[int, int]:
        h, w = store.array(self.group, schema.LABELS).shape[1:]
        return (h, w)

    @store.quiet_numcodecs()
    def feature_names(self) -> list[str]:
        """Every "<branch>/<layer>" array the cache holds, in record order."""
        return [
            schema.feature_name(b, layer)
            for b in self.branches
            if b in self.group.group_keys()
            for layer in self.record.layers
            if layer in store.subgroup(self.group, b).array_keys()
        ]

    def layer_arrays(self) -> dict[str, LayerSpec]:
        """{"<branch>/<layer>": its LayerSpec} for every feature array."""
        specs = self.layer_specs
        return {name: specs[schema.split_name(name)[1]] for name in self.feature_names()}

    @store.quiet_numcodecs()
    def array_shape(self, name: str) -> tuple[int, ...]:
        """Per-sample shape of an array, e.g. (S, C, h, w) (a feature array's as decoded)."""
        shape = tuple(store.array(self.group, name).shape[1:])
        if "/" in name and schema.split_name(name)[1] in self.record.layers:
            return logical_shape(self.record, name, shape)
        return shape

    # -- codecs ---------------------------------------------------------------------------
    def codec(self, name: str) -> codecs.Codec:
        """The codec of feature array `name` (codecs.py)."""
        return codecs.codec_of(self.record.codecs, name)

    def expands(self, name: str) -> bool:
        """Whether a feature array is stored as parts that `codecs.decode` expands (int8, pca)."""
        return self.codec(name).name in ("int8", "pca")

    @store.quiet_numcodecs()
    def shared(self, name: str) -> dict[str, np.ndarray]:
        """The arrays every sample of `name` shares (pca: {".basis": [C, k], ".mean": [C]}), else {}."""
        if name not in self._shared:
            for suffix in self.codec(name).shared(self.array_shape(name)[1]):
                self.check_array(name + suffix)
            self._shared[name] = read_shared(self.group, name, self.codec(name), self.array_shape(name)[1])
        return self._shared[name]

    @store.quiet_numcodecs()
    def stored_feature_bytes(self) -> tuple[int, int]:
        """(bytes the feature arrays' files take, float16 bytes they decode to) over complete samples."""
        complete = int((self.status == schema.COMPLETE).sum())
        decoded = complete * sum(int(np.prod(self.array_shape(k))) * 2 for k in self.feature_names())
        stored = 0
        for name in self.feature_names():
            b, layer = schema.split_name(name)
            for key in store.subgroup(self.group, b).array_keys():
                if key == layer or key.startswith(layer + "."):
                    stored += store.stored_bytes(f"{str(self.path).rstrip('/')}/{b}/{key}")
        return stored, decoded

    def bytes_per_sample(self) -> int:
        """Uncompressed bytes of one sample: features + labels (+ original labels)."""
        names = self.feature_names() + [schema.LABELS]
        if self.is_eval:
            names += [schema.ORIG_LABELS, schema.ORIG_SIZES]
        return sum(int(np.prod(self.array_shape(k))) * self._itemsize(k) for k in names)

    @store.quiet_numcodecs()
    def _itemsize(self, name: str) -> int:
        return 2 if "/" in name else np.dtype(store.array(self.group, name).dtype).itemsize  # features: float16

    def complete_indices(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.status == schema.COMPLETE)]

    def pending_indices(self) -> list[int]:
        """Samples not written yet (an extraction still running, or interrupted); not the skipped ones."""
        return [int(i) for i in np.flatnonzero(self.status == schema.PENDING)]

    @store.quiet_numcodecs()
    def refresh_status(self) -> np.ndarray:
        """Re-read the markers (a cache still being written)."""
        self.status = status.read_all(store.array(self.group, schema.STATUS), self._root)
        return self.status

    # -- reading ------------------------------------------------------------------------
    @store.quiet_numcodecs()
    def source(self, name: str) -> ChunkSource:
        if name not in self._sources:
            if name not in self.group:
                raise DiffsegError(f"{self.path} has no array {name!r} (it holds {self.feature_names()})")
            array = store.array(self.group, name)
            self.check_array(name, array)
            self._sources[name] = ChunkSource(array, self._root)
        return self._sources[name]

    def array_problem(self, name: str, array: zarr.Array | None = None) -> str | None:
        """How array `name`'s metadata disagrees with the record (expected.py), as one line, or None."""
        problem = array_problem(self.record, name, array if array is not None else store.array(self.group, name))
        return None if problem is None else f"{str(self.path).rstrip('/')}/{name}: {problem}"

    def check_array(self, name: str, array: zarr.Array | None = None) -> None:
        problem = self.array_problem(name, array)
        if problem is not None:
            raise DiffsegError(problem)

    def array_names(self) -> list[str]:
        """Every array of the cache, nested ones as "<branch>/<name>"."""
        return [key for key, node in self.group.members(max_depth=None) if isinstance(node, zarr.Array)]

    def check_complete(self, i: int) -> None:
        if not 0 <= i < self.n:
            raise DiffsegError(f"sample index {i} is outside {self.path} (N = {self.n})")
        if self.status[i] != schema.COMPLETE:
            what = "skipped" if self.status[i] == schema.SKIPPED else "incomplete"
            raise DiffsegError(f"sample {self.ids[i]} (index {i}) of {self.path} is {what}")

    @contextmanager
    def _sample(self, i: int) -> Iterator[None]:
        """Reads of sample i: refused unless it is complete; a chunk missing or corrupt inside is
        one error naming the cache, the array and the sample (how to repair it included)."""
        self.check_complete(i)
        try:
            yield
        except (MissingChunk, CorruptChunk) as err:
            what = "marked complete but lacks a chunk" if isinstance(err, MissingChunk) else "corrupt"
            raise type(err)(
                f"sample {self.ids[i]} (index {i}) of {self.path} is {what}, refused: {err}; "
                "re-extract it (delete its status chunk and rerun extract)"
            ) from err

    def read(
        self,
        i: int,
        names: Iterable[str],
        steps: Sequence[int] | None = None,
        out: dict[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """{name: array of sample i}; `steps` (indices into save_steps) applies to feature
        arrays; `out` {name: preallocated array} receives them in place (e.g. a RAM copy)."""
        out = out or {}
        result = {}
        with self._sample(i):
            for k in names:
                if "/" in k and self.expands(k):  # decoded here (CPU); training decodes on its device
                    x = self.codec(k).decode_numpy(self._parts(i, k, steps), self.shared(k))
                    result[k] = x.astype(np.float16) if k not in out else _put(out[k], x)
                else:
                    result[k] = self.source(k).read(i, steps if "/" in k else None, out.get(k))
        return result

    def read_parts(self, i: int, name: str, steps: Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """{suffix: stored array} of feature array `name` of sample i, as the codec wrote them
        (step subset applied: every part has the steps on its first axis)."""
        with self._sample(i):
            return self._parts(i, name, steps)

    def _parts(self, i: int, name: str, steps: Sequence[int] | None) -> dict[str, np.ndarray]:
        parts = self.codec(name).stored(self.array_shape(name))
        return {s: self.source(name + s).read(i, steps) for s in parts}

    def orig_label(self, i: int) -> np.ndarray:
        """The label at its original resolution, uint8[h, w] (evaluation caches)."""
        if not self.is_eval:
            raise DiffsegError(f"{self.path} is a training cache; it keeps no original labels")
        with self._sample(i):
            h, w = (int(v) for v in self.source(schema.ORIG_SIZES).read(i))
            return np.ascontiguousarray(self.source(schema.ORIG_LABELS).read(i)[:h, :w])

    @store.quiet_numcodecs()
    def zarr_array(self, name: str) -> zarr.Array:
        """The plain zarr array (tests and tools; the slow, general path)."""
        return store.array(self.group, name)


def _put(out: np.ndarray, x: np.ndarray) -> np.ndarray:
    out[...] = x
    return out
