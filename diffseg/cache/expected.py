"""What the cache record says each array must be, and the first way an array's own metadata
(its zarr.json) disagrees: shape, chunking, dtype, codec pipeline.

The reader trusts an array's metadata to decode its chunks, so a zarr.json edited by hand or
by another tool (float16 made uint16, a shape or codec changed) would otherwise be read as
garbage values. `array_problem` is checked when the reader first opens an array and by
`cache verify` for every array. Pure: it looks at zarr metadata, it reads no chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import zarr

from diffseg.cache import codecs, schema, store
from diffseg.cache.packs import packing_of
from diffseg.cache.record import CacheRecord


@dataclass(frozen=True)
class Expected:
    shape: tuple[int | None, ...]  # None: any length on that axis
    dtype: str | None  # None: not checked (the ids' string dtype)
    layout: tuple[str, bool] | None  # store.chunk_layout's (chunk encoding, crc32c trailer); None: not checked
    per_sample: bool = True  # chunked (1, ...): one chunk per sample
    codec: str = ""  # the record's words for the codec (shown in a message)


def _checksummed(spec: object) -> bool:
    return str(spec).endswith(store.CHECKSUM_SUFFIX)


def _shared_part(record: CacheRecord, name: str) -> tuple[str, str] | None:
    """("<branch>/<layer>", suffix) when `name` is an array a codec keeps per feature array (pca's basis)."""
    if "/" not in name:
        return None
    branch, rest = name.split("/", 1)
    layers = [layer for layer in record.layers if rest.startswith(layer + ".")]
    if branch not in schema.BRANCHES or not layers:
        return None
    layer = max(layers, key=len)
    return schema.feature_name(branch, layer), rest[len(layer) :]


def expected(record: CacheRecord, name: str) -> Expected | None:
    """What array `name` must be according to the record; None for an array the record says nothing of."""
    n = record.samples
    W, H = record.resolution
    label_codec = str(record.codecs.get(schema.LABELS, "zstd-3"))
    if name == schema.IDS:
        return Expected((n,), None, None, per_sample=False)
    if name == schema.STATUS:
        return Expected((n,), "uint8", ("raw", False))
    if name == schema.LABELS:
        return Expected((n, H, W), "uint8", ("zstd", _checksummed(label_codec)), codec=label_codec)
    if name == schema.ORIG_LABELS:
        spec = str(record.codecs.get(schema.ORIG_LABELS, label_codec))
        return Expected((n, None, None), "uint8", ("zstd", _checksummed(spec)), codec=spec)
    if name == schema.ORIG_SIZES:
        return Expected((n, 2), "int32", ("raw", False))
    if record.sample_hash is not None and name == record.sample_hash:
        return Expected((n, 32), "uint8", ("raw", False))
    crc = _checksummed(record.codecs.get("features", "raw"))
    packing = packing_of(record)
    stored = packing.stored_array(name)
    if stored is not None:
        pname, shape, dtype = stored
        codec = packing.packs[pname].codec
        layout = "zstd" if codec.name == "bitround" and name == pname else "raw"
        return Expected((n, *shape), dtype, (layout, crc), codec=str(codec) + (store.CHECKSUM_SUFFIX if crc else ""))
    part = _shared_part(record, name)
    if part is None:
        return None
    base, suffix = part
    codec = codecs.codec_of(record.codecs, base)
    spec = record.layers[schema.split_name(base)[1]]
    words = str(codec) + (store.CHECKSUM_SUFFIX if crc else "")
    shared = codec.shared(spec.channels)
    if suffix in shared:
        shape, dtype = shared[suffix]
        return Expected(tuple(shape), dtype, ("raw", crc), per_sample=False, codec=words)
    return None


def _layout_words(layout: tuple[str, bool] | None) -> str:
    if layout is None:
        return "a pipeline diffseg does not write"
    return layout[0] + (store.CHECKSUM_SUFFIX if layout[1] else "")


def array_problem(record: CacheRecord, name: str, array: zarr.Array) -> str | None:
    """How array `name`'s metadata disagrees with the record ("its zarr.json says X, the cache record
    says Y"), or None when it agrees (or the record says nothing of the array)."""
    want = expected(record, name)
    if want is None:
        return None
    shape = tuple(array.shape)
    if len(shape) != len(want.shape) or any(w is not None and s != w for s, w in zip(shape, want.shape)):
        shown = [w if w is not None else "*" for w in want.shape]
        return f"its zarr.json says shape {list(shape)}, the cache record says {shown}".replace("'", "")
    if want.per_sample and tuple(array.chunks) != (1, *shape[1:]):
        return f"its zarr.json says chunks {list(array.chunks)}, the cache record says {[1, *shape[1:]]}"
    if want.dtype is not None and np.dtype(array.dtype) != np.dtype(want.dtype):
        return f"its zarr.json says dtype {np.dtype(array.dtype)}, the cache record says {np.dtype(want.dtype)}"
    if want.layout is not None:
        got = store.chunk_layout(array)
        if got != want.layout:
            said = f" ({want.codec})" if want.codec else ""
            return (
                f"its zarr.json says codecs {_layout_words(got)}, the cache record says "
                f"{_layout_words(want.layout)}{said}"
            )
    return None


def unnamed(record: CacheRecord, names) -> list[str]:
    """The arrays of `names` the record says nothing of (an interrupted `cache migrate` leaves its old ones)."""
    return [name for name in names if expected(record, name) is None]
