"""CacheWriter: create (or resume) a feature cache and write samples into it.

Concurrency model (docs/design/architecture.md "Distributed extraction"): one coordinating process calls
`CacheWriter.create` (which creates the group, or checks an existing one and opens it
for resume) and later `update_record`; any number of worker processes write disjoint
samples with `write_sample`/`mark_skipped` on a writer they received pickled or opened
with `CacheWriter.open`. Every sample owns its own chunk of every array, so writers never
touch the same file, and zarr's LocalStore writes each chunk file atomically (temp file +
rename). The sample's `status` chunk is written last: a crash at any point leaves the
sample pending, and the rerun rewrites it byte for byte. Before a sample's first write and
before its status the cache root's zarr.json is checked (one stat locally, ~25 us; one GET
on an object store): a cache folder deleted, or a bucket recreated, under a running
extraction stops it within one sample (the writes would otherwise recreate folders or
objects under a root that is no cache any more).

Creation marks the root group as in progress (`store.CREATING`) until its record replaces the
marker last, so a creation interrupted by a full disk or a kill is started over by the rerun.
Storage faults users meet (core/storage_errors.py) are one line naming the cache.

Samples are handed in and out as feature arrays ("<branch>/<layer>" [S, C, h, w]); the store holds
packs (packs.py): a branch's layers of one stride side by side in one array, one chunk file per
sample, so a sample is a handful of files whatever the number of layers. `create` decides the
packing ("stride", or "layer": one pack per layer as format 2 stored them) and the record keeps it.

On a local store the chunks of the codecs chunkwrite.py knows are written as files directly
(the same bytes, the same atomic rename) rather than through zarr's array API, whose fixed
cost per call dominated small samples (benchmarks/bench_writer.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from diffseg.cache import codecs, schema, status, store
from diffseg.cache.chunkwrite import ChunkWriter, chunk_writer
from diffseg.cache.packs import Packing, feature_shape, packing_of, packs_for
from diffseg.cache.record import CacheRecord, read_record, resume_difference
from diffseg.core.classes import IGNORE
from diffseg.core.errors import CacheMismatch, DiffsegError
from diffseg.core.storage_errors import storage_error, storage_errors


class CacheWriter:
    """Writes samples of one cache. Picklable: holds the path, opens arrays lazily per process."""

    @store.quiet_numcodecs()
    def __init__(self, path: str | Path):
        self.path = path
        self._group: zarr.Group | None = None
        self._arrays: dict[str, zarr.Array] = {}
        self._chunks: dict[str, ChunkWriter | None] = {}
        self.record: CacheRecord = read_record(path, self.group.attrs)
        missing = [k for k in (schema.IDS, schema.STATUS) if not store.has(self.group, k)]
        if missing:
            raise DiffsegError(f"{path} is a damaged cache: the {' and '.join(missing)} array is missing")
        self.ids: list[str] = [str(s) for s in np.asarray(store.array(self.group, schema.IDS)[:])]
        self.n = len(self.ids)
        self.packing = packing_of(self.record)
        self.feature_names = sorted(self.packing.names())
        self.codecs = {k: codecs.codec_of(self.record.codecs, k) for k in self.feature_names}
        self.shapes = {k: feature_shape(self.record, k) for k in self.feature_names}
        self._shared: dict[str, dict[str, np.ndarray]] = {}  # pca bases, read on first use
        self._encoder: codecs.DeviceEncoder | None = None
        self.eval_cache = schema.ORIG_LABELS in _array_names(self.group)
        self.label_shape = tuple(store.array(self.group, schema.LABELS).shape[1:])

    # -- opening ------------------------------------------------------------------------
    @classmethod
    @store.quiet_numcodecs()
    def create(
        cls,
        path: str | Path,
        record: CacheRecord,
        ids: list[str],
        arrays: dict[str, tuple[tuple[int, ...], Any]] | None = None,
        orig_label_max: tuple[int, int] | None = None,
        shared: dict[str, dict[str, np.ndarray]] | None = None,
        packing: str = "stride",
    ) -> CacheWriter:
        """Create the cache at `path`, or open an existing one with the same record for resume
        (RESUME_FIELDS, the ids and the arrays must match).

        record.samples == len(ids). arrays: {"<branch>/<layer>": (per_sample_shape (S, C, h, w),
        dtype)}; default: every branch holds every layer of the record, float16. Labels are [H, W]
        from record.resolution ([W, H]). orig_label_max: (Hmax, Wmax) for evaluation caches.
        record.codecs["features"] is the codec spec (codecs.py); shared: {array: {".basis": ..,
        ".mean": ..}} for pca arrays (fitted before creation; ignored on resume, the cache keeps its own).
        packing: how the store holds the feature arrays (packs.py; a resume keeps the cache's own).
        """
        assert record.samples == len(ids), f"record.samples {record.samples} != {len(ids)} ids"
        if arrays is None:
            arrays = feature_arrays(record)
        record = with_codecs(record, arrays, orig_label_max is not None)
        # packed here, whatever packs the record came with (a record copied from another cache); a resume
        # keeps the cache's own
        record = dataclasses.replace(record, packs=packs_for(record, arrays, packing))
        with storage_errors(path):
            if store.is_cache(path):
                return cls._resume(path, record, ids, arrays)
            if record.sample_hash is None:
                record = dataclasses.replace(record, sample_hash=schema.SAMPLE_HASH)
            if store.is_local(path) and not store.creation_interrupted(path):
                p = store.local_path(path)
                if p.exists() and (not p.is_dir() or any(p.iterdir())):
                    raise DiffsegError(f"{path} exists and is not a diffseg cache: use another --out or delete it")
            need = sorted(k for k in arrays if codecs.codec_of(record.codecs, k).name == "pca")
            lacking = [k for k in need if k not in (shared or {})]
            assert not lacking, f"pca arrays {lacking} need their fitted basis (shared=)"
            _create_group(path, record, ids, arrays, orig_label_max, shared or {})
            return cls(path)

    @classmethod
    def open(cls, path: str | Path) -> CacheWriter:
        """Open an existing cache for writing (worker processes); no config check."""
        return cls(path)

    @classmethod
    @store.quiet_numcodecs()
    def _resume(cls, path, record: CacheRecord, ids: list[str], arrays: dict) -> CacheWriter:
        attrs = store.open_group(path, "r").attrs
        if attrs.get("format_version") is None:
            raise DiffsegError(
                f"{path} is a Zarr group without diffseg attributes (not a cache, or its creation "
                "was interrupted): use another --out or delete it"
            )
        writer = cls(path)
        if store.without_checksum(writer.record.codecs) == store.without_checksum(record.codecs):
            # the checksum layer does not change a value: a cache with or without it resumes as it is
            record = dataclasses.replace(record, codecs=writer.record.codecs)
        diff = resume_difference(writer.record, record) or schema.ids_difference(writer.ids, list(ids))
        if diff is None:
            have = {k: (writer.shapes[k], "float16") for k in writer.feature_names}
            want = {k: (tuple(s), str(np.dtype(d))) for k, (s, d) in arrays.items()}
            diff = schema.first_difference(have, want, "arrays") if have != want else None
        if diff is not None:
            key, was, now = diff
            raise CacheMismatch(
                f"{path} was extracted with {key}={schema.show_value(was)}; this run asks for "
                f"{schema.show_value(now)}: use another --out or delete it"
            )
        return writer

    # -- per-process state --------------------------------------------------------------
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_group"], state["_arrays"], state["_chunks"], state["_encoder"] = None, {}, {}, None
        return state

    @property
    @store.quiet_numcodecs()
    def group(self) -> zarr.Group:
        if self._group is None:
            self._group = store.open_group(self.path, "r+")
        return self._group

    @store.quiet_numcodecs()
    def _array(self, name: str) -> zarr.Array:
        if name not in self._arrays:
            self._arrays[name] = store.array(self.group, name).with_config(store.WRITE_CONFIG)
        return self._arrays[name]

    def _put(self, name: str, i: int, value) -> None:
        """Sample i's chunk of array `name` := value: the chunk file directly when chunkwrite knows
        the codecs, else zarr's array API."""
        self._put_pieces(name, i, [np.asarray(value)])

    def _put_pieces(self, name: str, i: int, pieces: list[np.ndarray], exact: bool = False) -> None:
        """Sample i's chunk of array `name` := the pieces side by side on axis 1 (a pack's layers);
        `exact`: ChunkWriter.write_pieces' (zarr's own path rounds bitround again, which changes nothing:
        its chunks were rounded when first written)."""
        if name not in self._chunks:
            self._chunks[name] = chunk_writer(self._array(name), self._root)
        writer = self._chunks[name]
        if writer is not None:
            writer.write_pieces(i, pieces, exact)
        else:
            self._array(name)[i] = pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)

    @property
    def _root(self) -> Path | None:
        return store.local_path(self.path) if store.is_local(self.path) else None

    @property
    def encoder(self) -> codecs.DeviceEncoder:
        """This cache's codecs in torch (on the features' device: extraction encodes there, then copies)."""
        if self._encoder is None:
            self._encoder = codecs.DeviceEncoder(self.codecs, self.shared)
        return self._encoder

    @store.quiet_numcodecs()
    def shared(self, name: str) -> dict[str, np.ndarray]:
        """The arrays every sample of feature array `name` shares (pca: basis and mean)."""
        if name not in self._shared:
            self._shared[name] = read_shared(self.group, name, self.codecs[name], self.shapes[name][1])
        return self._shared[name]

    # -- writing ------------------------------------------------------------------------
    def status(self) -> np.ndarray:
        """-> np.uint8[N]: 0 pending, 1 complete, 2 skipped."""
        return status.read_all(self._array(schema.STATUS), self._root)

    def pending(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.status() == schema.PENDING)]

    def write_sample(
        self,
        i: int,
        arrays: dict[str, np.ndarray],
        label: np.ndarray,
        orig_label: np.ndarray | None = None,
        sample_hash: np.ndarray | None = None,
    ) -> None:
        """Write every array of sample i, then mark it complete (the marker goes last). A failed
        write (a full disk or bucket quota) is one DiffsegError; the sample stays pending.
        arrays: {name: float16 [S, C, h, w]}, encoded here, or {name: {suffix: part}} already
        encoded (codecs.DeviceEncoder: extraction encodes on its device), written as they are."""
        self._check_sample(i, arrays, label, orig_label)
        try:
            self._write(i, arrays, label, orig_label, sample_hash)
        except Exception as err:
            where = f"{self.path}, sample {self.ids[i]} (index {i}, left pending)"
            mapped = storage_error(err, where)
            if mapped is not None:
                raise mapped from err
            if not isinstance(err, OSError):
                raise
            raise DiffsegError(f"{where}: writing it failed ({err}); rerun to resume once that is fixed") from err

    def _write(self, i: int, arrays: dict, label: np.ndarray, orig_label: np.ndarray | None, sample_hash) -> None:
        self._check_root()  # before the first write, which would recreate a deleted folder
        if status.read_one(self._array(schema.STATUS), self._root, i) != schema.PENDING:
            self._put(schema.STATUS, i, np.uint8(schema.PENDING))  # a rewrite: pending while in flight
        encoded = {}
        for name in self.feature_names:
            value = arrays[name]
            encoded[name] = value if isinstance(value, Mapping) else self.encoder.encode(name, value)
        self.write_packs(i, encoded)
        self._put(schema.LABELS, i, label)
        if self.eval_cache:
            assert orig_label is not None  # _check_sample refused an evaluation sample without it
            h, w = orig_label.shape
            padded = np.full(self._array(schema.ORIG_LABELS).shape[1:], IGNORE, np.uint8)
            padded[:h, :w] = orig_label
            self._put(schema.ORIG_LABELS, i, padded)
            self._put(schema.ORIG_SIZES, i, np.array([h, w], np.int32))
        if self.record.sample_hash is not None and sample_hash is not None:  # caches before it keep none
            self._put(self.record.sample_hash, i, sample_hash)
        self._check_root()
        self._put(schema.STATUS, i, np.uint8(schema.COMPLETE))

    def write_packs(
        self,
        i: int,
        encoded: Mapping[str, Mapping[str, np.ndarray]],
        packing: Packing | None = None,
        exact: bool = False,
    ) -> None:
        """Sample i's chunk of every pack of `packing` (default: the cache's) from its feature arrays'
        stored parts {name: {suffix: part}}; no status change (write_sample's step, and migrate's, which
        copies stored values `exact`ly: see ChunkWriter.write_pieces)."""
        for pack in (packing or self.packing).packs.values():
            names = [schema.feature_name(pack.branch, layer) for layer in pack.layers]
            for suffix in pack.parts:
                self._put_pieces(pack.name + suffix, i, [np.asarray(encoded[k][suffix]) for k in names], exact)

    def mark_skipped(self, i: int) -> None:
        """Mark sample i as skipped (a bad input); the coordinator records the reason in the record."""
        self._check_index(i)
        self._check_root()
        with storage_errors(f"{self.path}, sample {self.ids[i]} (index {i}, left pending)"):
            self._put(schema.STATUS, i, np.uint8(schema.SKIPPED))

    def _check_root(self) -> None:
        """Refuse to write or mark a sample in a cache whose root vanished (folder deleted, bucket recreated)."""
        if not store.root_exists(self.path):
            raise DiffsegError(
                f"{self.path}: the cache vanished while being written (its {store.ROOT_METADATA} is gone: the "
                "folder was deleted or the bucket recreated); what was written since is no cache: delete it "
                "and extract again"
            )

    @store.quiet_numcodecs()
    def update_record(self, **changes: Any) -> None:
        """Replace the given record fields, e.g. skipped, timings, host (coordinating process only)."""
        group = store.open_group(self.path, "r+")  # fresh: never write back stale attributes
        record = dataclasses.replace(read_record(self.path, group.attrs), **changes)
        with storage_errors(f"{self.path}/{store.ROOT_METADATA}"):
            group.attrs.update(record.to_dict())
        self.record = record

    # -- checks -------------------------------------------------------------------------
    def _check_index(self, i: int) -> None:
        if not 0 <= i < self.n:
            raise DiffsegError(f"sample index {i} is outside {self.path} (N = {self.n})")

    def _check_sample(self, i, arrays, label, orig_label) -> None:
        self._check_index(i)
        who = f"sample {self.ids[i]} (index {i})"
        if set(arrays) != set(self.feature_names):
            raise DiffsegError(f"{who}: arrays {sorted(arrays)} do not match the cache's {self.feature_names}")
        for name in self.feature_names:
            a, shape = arrays[name], self.shapes[name]
            if isinstance(a, Mapping):  # encoded already
                why = codecs.check_parts(self.codecs[name], shape, a)
                bad = sum(nonfinite(p) for p in a.values() if p.dtype == np.float16) if why is None else 0
                if why is not None or bad:
                    raise DiffsegError(f"{who}: {name}: {why or f'{bad} NaN/inf values'}")
                continue
            if a.shape != shape or a.dtype != np.float16:
                raise DiffsegError(f"{who}: {name} is {a.dtype}{list(a.shape)}, the cache holds float16{list(shape)}")
            bad = nonfinite(a)
            if bad:
                raise DiffsegError(f"{who}: {name} holds {bad} NaN/inf values of {a.size}")
        if label.shape != self.label_shape or label.dtype != np.uint8:
            raise DiffsegError(
                f"{who}: label is {label.dtype}{list(label.shape)}, expected uint8{list(self.label_shape)}"
            )
        if self.eval_cache:
            hmax, wmax = self._array(schema.ORIG_LABELS).shape[1:]
            if orig_label is None or orig_label.dtype != np.uint8 or orig_label.ndim != 2:
                raise DiffsegError(f"{who}: an evaluation cache needs the original uint8 [h, w] label")
            if orig_label.shape[0] > hmax or orig_label.shape[1] > wmax:
                raise DiffsegError(
                    f"{who}: original label {list(orig_label.shape)} exceeds the planned maximum [{hmax}, {wmax}]"
                )
        elif orig_label is not None:
            raise DiffsegError(f"{who}: {self.path} is a training cache; it keeps no original labels")


def with_codecs(record: CacheRecord, arrays: dict, eval_cache: bool) -> CacheRecord:
    """The record with the codecs store.py creates: the feature spec normalised, each feature
    array's resolved codec, labels (and original labels) as store.CODECS says."""
    spec = codecs.normalize_spec(str(record.codecs.get("features", "raw")).removesuffix(store.CHECKSUM_SUFFIX))
    made = {k: v for k, v in store.CODECS.items() if k != schema.ORIG_LABELS or eval_cache}
    made["features"] = spec + store.CHECKSUM_SUFFIX
    if spec != "raw":  # raw caches keep today's record (no per-array entries)
        made.update({k: str(c) for k, c in codecs.resolve(spec, sorted(arrays)).items()})
    return dataclasses.replace(record, codecs=made)


def read_shared(group: zarr.Group, name: str, codec: codecs.Codec, channels: int) -> dict[str, np.ndarray]:
    return {s: np.asarray(store.array(group, name + s)[...]) for s in codec.shared(channels)}


def nonfinite(a: np.ndarray) -> int:
    """How many values of `a` are NaN or inf. float16 is checked first on its bits (an exponent of
    all ones: a max over a uint16 view, ~15x faster than np.isfinite, whose cost showed in the
    writer's profile); the count is taken only when there is something to count."""
    f16 = a.dtype == np.float16 and a.size and a.flags.c_contiguous
    if f16 and int(np.bitwise_and(a.reshape(-1).view(np.uint16), 0x7C00).max()) != 0x7C00:
        return 0
    return a.size - int(np.count_nonzero(np.isfinite(a)))


def _array_names(group: zarr.Group) -> list[str]:
    """Every array in the group, nested ones as "branch/layer"."""
    with storage_errors(f"{group.store_path} (a zarr.json under it)"):
        return [key for key, node in group.members(max_depth=None) if isinstance(node, zarr.Array)]


def feature_arrays(record: CacheRecord) -> dict[str, tuple[tuple[int, ...], str]]:
    """{"<branch>/<layer>": ((S, C, h, w), "float16")} for every branch and layer of the record."""
    S = len(record.save_steps)
    return {
        schema.feature_name(b, name): ((S, spec.channels, *spec.size), "float16")
        for b in record.branches
        for name, spec in record.layers.items()
    }


def _create_group(path, record: CacheRecord, ids: list[str], arrays: dict, orig_label_max, shared: dict) -> None:
    """The group marked as being created first, then the arrays, and the record last in place of the
    marker (one write of the root zarr.json): a group still marked was never finished and holds no
    sample; `create` clears it and starts again (mode "w" empties the folder or prefix)."""
    n = len(ids)
    group = zarr.open_group(
        store.store_for(path, read_only=False), mode="w", zarr_format=3, attributes={store.CREATING: True}
    )
    ids_arr = group.create_array(schema.IDS, shape=(n,), chunks=(max(n, 1),), dtype=str, overwrite=True)
    if n:
        ids_arr[:] = np.array(ids, dtype=object).astype(str)
    w, h = record.resolution
    store.create_label_array(group, schema.LABELS, n, (h, w))
    for name, (shape, dtype) in sorted(arrays.items()):
        branch, layer = schema.split_name(name)
        assert branch in record.branches and layer in record.layers, f"{name} not in the record's branches/layers"
        assert np.dtype(dtype) == np.float16, f"{name}: feature arrays are float16"
        assert tuple(shape) == feature_shape(record, name), f"{name}: {shape} is not the record's geometry"
        codec = codecs.codec_of(record.codecs, name)
        for suffix in codec.shared(shape[1]):
            store.create_shared_array(group, name + suffix, shared[name][suffix])
    for pack in packing_of(record).packs.values():
        for suffix, (part_shape, part_dtype) in pack.parts.items():
            filters = codecs.zarr_filters(pack.codec) if suffix == codecs.CODES else ()
            store.create_feature_array(group, pack.name + suffix, n, part_shape, np.dtype(part_dtype), filters)
    if orig_label_max is not None:
        store.create_label_array(group, schema.ORIG_LABELS, n, tuple(orig_label_max))
        store.create_small_array(group, schema.ORIG_SIZES, n, (2,), np.int32)
    if record.sample_hash is not None:
        store.create_small_array(group, record.sample_hash, n, (32,), np.uint8)
    store.create_small_array(group, schema.STATUS, n, (), np.uint8)
    group.attrs.put(record.to_dict())  # replaces the marker
