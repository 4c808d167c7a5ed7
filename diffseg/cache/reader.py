"""CacheReader: what a cache holds, and one sample at a time out of it.

`read(i, names)` returns numpy arrays from the fast chunk path (fastread.py): a feature array
"<branch>/<layer>" is its slab of the pack that holds it (packs.py), the layers of one pack read
together. Every read of a
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
from diffseg.cache.packs import Slot, feature_shape, packing_of
from diffseg.cache.record import CacheRecord, read_record
from diffseg.cache.writer import read_shared
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
        self.packing = packing_of(self.record)
        self._sources: dict[str, ChunkSource] = {}
        self._shared: dict[str, dict[str, np.ndarray]] = {}
        self._codecs: dict[str, codecs.Codec] = {}
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

    def feature_names(self) -> list[str]:
        """Every "<branch>/<layer>" array the cache holds, in record order."""
        held = self.packing.slots
        return [
            name
            for b in self.branches
            for layer in self.record.layers
            if (name := schema.feature_name(b, layer)) in held
        ]

    def layer_arrays(self) -> dict[str, LayerSpec]:
        """{"<branch>/<layer>": its LayerSpec} for every feature array."""
        specs = self.layer_specs
        return {name: specs[schema.split_name(name)[1]] for name in self.feature_names()}

    @store.quiet_numcodecs()
    def array_shape(self, name: str) -> tuple[int, ...]:
        """Per-sample shape of an array, e.g. (S, C, h, w) (a feature array's as decoded)."""
        if name in self.packing.slots:
            return feature_shape(self.record, name)
        return tuple(store.array(self.group, name).shape[1:])

    # -- codecs ---------------------------------------------------------------------------
    def codec(self, name: str) -> codecs.Codec:
        """The codec of feature array `name` (codecs.py); parsed once (it was a third of a small sample's read)."""
        if name not in self._codecs:
            self._codecs[name] = codecs.codec_of(self.record.codecs, name)
        return self._codecs[name]

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
        root = str(self.path).rstrip("/")
        stored = sum(
            store.stored_bytes(f"{root}/{pack.name}{suffix}")
            for pack in self.packing.packs.values()
            for suffix in pack.parts
        )
        for name in self.feature_names():
            stored += sum(store.stored_bytes(f"{root}/{name}{s}") for s in self.codec(name).shared(1))
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
    def source(self, name: str) -> ChunkSource | SlabSource:
        """What reads array `name` one sample at a time: a feature array (or one of its codec's parts)
        is a slab of its pack's source, anything else its own array's."""
        part = self.packing.part_of(name)
        if part is None:
            return self._source(name)
        slot, suffix = part
        return SlabSource(self._source(slot.pack + suffix), slot, name)

    def _source(self, name: str) -> ChunkSource:
        source = self._sources.get(name)  # the hot path: no warnings context per read
        return source if source is not None else self._open_source(name)

    @store.quiet_numcodecs()
    def _open_source(self, name: str) -> ChunkSource:
        if name not in self._sources:
            if name not in self.group:
                raise DiffsegError(f"{self.path} has no array {name!r} (it holds {self.feature_names()})")
            array = store.array(self.group, name)
            self.check_array(name, array)
            stored = self.packing.stored_array(name)
            holds = [n for n, slot in self.packing.slots.items() if stored and slot.pack == stored[0]]
            self._sources[name] = ChunkSource(array, self._root, holds)
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
        result: dict[str, np.ndarray] = {}
        names = list(names)
        with self._sample(i):
            feats = [k for k in names if k in self.packing.slots]
            coded = [k for k in feats if self.expands(k)]
            plain = [k for k in feats if k not in coded]
            # every part of a pack read once for all its layers asked for (_stored)
            for k, parts in (self._stored(i, coded, steps, {}) if coded else {}).items():
                x = self.codec(k).decode_numpy(parts, self.shared(k))  # here (CPU); training decodes on its device
                result[k] = x.astype(np.float16) if k not in out else _put(out[k], x)
            for k, parts in (self._stored(i, plain, steps, out) if plain else {}).items():
                result[k] = parts[codecs.CODES]
            for k in names:
                if k in result:
                    continue
                if self.packing.part_of(k) is not None:  # one part of a coded feature array, as stored
                    result[k] = self.source(k).read(i, steps, out.get(k))
                else:
                    result[k] = self._source(k).read(i, None, out.get(k))
        return {k: result[k] for k in names}

    def read_parts(self, i: int, name: str, steps: Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """{suffix: stored array} of feature array `name` of sample i, as the codec wrote them
        (step subset applied: every part has the steps on its first axis)."""
        return self.read_stored(i, [name], steps)[name]

    def read_stored(
        self,
        i: int,
        names: Iterable[str],
        steps: Sequence[int] | None = None,
        out: dict[str, np.ndarray] | None = None,
    ) -> dict[str, dict[str, np.ndarray]]:
        """{name: {suffix: stored array}} of feature arrays `names` of sample i, each pack part read once
        for all of its layers; `out` {name + suffix: preallocated array} receives them in place."""
        with self._sample(i):
            return self._stored(i, list(names), steps, out or {})

    def _stored(self, i: int, names: list[str], steps, out: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
        by_pack: dict[str, list[Slot]] = {}
        for name in names:
            slot = self.packing.slots[name]
            by_pack.setdefault(slot.pack, []).append(slot)
        result: dict[str, dict[str, np.ndarray]] = {name: {} for name in names}
        for pname, slots in by_pack.items():
            for suffix in self.packing.packs[pname].parts:
                slabs = [(s.offset, s.width) for s in slots]
                got = self._source(pname + suffix).read_slabs(
                    i, slabs, steps, [out.get(s.name + suffix) for s in slots]
                )
                for s, a in zip(slots, got):
                    result[s.name][suffix] = a
        return result

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


class SlabSource:
    """One feature array (or codec part) as a source of its own: its slab of the pack's chunks."""

    def __init__(self, pack: ChunkSource, slot: Slot, name: str):
        self.pack, self.slot, self.name = pack, slot, name
        self.dtype = pack.dtype
        self.shape = (pack.shape[0], slot.width, *pack.shape[2:])

    def file(self, i: int) -> Path:
        """The pack's chunk file of sample i (it holds this array's slab)."""
        return self.pack.file(i)

    def read(self, i: int, steps: Sequence[int] | None = None, out: np.ndarray | None = None) -> np.ndarray:
        return self.pack.read_slabs(i, [(self.slot.offset, self.slot.width)], steps, [out])[0]


def _put(out: np.ndarray, x: np.ndarray) -> np.ndarray:
    out[...] = x
    return out
