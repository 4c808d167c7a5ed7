"""Opening the Zarr group, creating its arrays, and the codec choice.

Codec (measured by benchmarks/bench_codec.py, SD 2.1 shapes at 256 px, 5 steps, synthetic
SiLU-like smooth activations, one core, numcodecs 0.16.6):

    features f16     ratio  enc MB/s  dec MB/s        labels u8 512x512  ratio  dec MB/s
    none              1.00         -         -        none                1.0        -
    zstd-1            1.12       965      1390        zstd-1              106     5287
    zstd-3            1.13       282      1252        zstd-3              131     5689
    blosc-lz4+shuf    1.04      1525      5122        blosc-lz4+shuf       67    16342
    blosc-zstd1+shuf  1.14       370       828
    blosc-lz4+bitsh   1.08      1108      2686

Real `tiny`-model features (demo dataset, 5step preset, 72 res + 72 blk chunks): zstd-1/3
ratio 1.08 at 430 MB/s decode, blosc-lz4+shuffle 1.00, blosc-lz4+bitshuffle 1.10 at
0.6-2.3 GB/s; demo labels 128x128: zstd-3 ratio 26.

Lossless float16 codecs save 0-14 % of the disk while the decode (0.8-5 GB/s on one
core) would sit on the training hot path next to a page-cache read of several GB/s; so
feature arrays are stored uncompressed (bytes codec, little endian: the reader can
`readinto` a numpy array directly). Labels are mostly constant regions: zstd level 3
makes them ~100x smaller and decodes at > 5 GB/s.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import zarr
from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec
from zarr.core.array_spec import ArrayConfigParams
from zarr.core.metadata import ArrayV3Metadata

from diffseg.core.atomic import atomic_write
from diffseg.core.location import is_local, local_path, normalize
from diffseg.core.storage_errors import storage_errors

# Every feature and label chunk ends with a crc32c of its bytes (zarr's checksum codec, 4 bytes):
# a flipped bit on disk or in transit is a refused sample, not garbage learned. Cost measured on
# the 2-core VM (google-crc32c 5.5 GB/s; fast reader, 26 MB feature chunks, page cache hot, 14 GB/s
# unchecked): a checked read reaches 0.41-0.52x of an unchecked one. So the fast reader checks each
# sample once per process, on its first read (an epoch), and later reads skip the 4-byte trailer:
# training pays it once, `cache verify` always, and a cold disk read (~2 GB/s) hides most of it.
FEATURE_COMPRESSORS = (Crc32cCodec(),)
LABEL_COMPRESSORS = (ZstdCodec(level=3), Crc32cCodec())
ROUNDED_COMPRESSORS = (ZstdCodec(level=1), Crc32cCodec())  # after bitround (codecs.py)
# The record's `codecs` of a cache created now ("features": every <branch>/<layer> array).
CODECS = {"features": "raw+crc32c", "labels": "zstd-3+crc32c", "orig_labels": "zstd-3+crc32c"}
CHECKSUM_SUFFIX = "+crc32c"
# Every chunk is written even when it equals the fill value: a complete sample then has
# all its chunk files, and the fast reader never guesses.
WRITE_CONFIG: ArrayConfigParams = {"write_empty_chunks": True}


# bitround chunks (codecs.py) use numcodecs' BitRound through zarr; zarr warns each time it builds that
# codec (creating it, opening such an array) that it is not in the Zarr v3 spec (zarr-python and
# numcodecs read it; README "Feature codecs" says how). Silenced only around our own zarr calls, so
# importing or using diffseg leaves the user's warning filters as they were.
NUMCODECS_WARNING = "Numcodecs codecs are not in the Zarr version 3 specification"


@contextlib.contextmanager
def quiet_numcodecs() -> Iterator[None]:
    """Around a zarr call that may build numcodecs' BitRound: its "not in the v3 spec" warning is
    dropped inside, every other filter untouched (warnings.catch_warnings restores them on exit)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=NUMCODECS_WARNING)
        yield


def store_for(path: str | Path, read_only: bool):
    """A LocalStore for local paths; an fsspec URL becomes zarr's own FsspecStore (credentials
    come from the environment or the usual config files, never from diffseg)."""
    if is_local(path):
        return zarr.storage.LocalStore(local_path(path), read_only=read_only)
    return zarr.storage.FsspecStore.from_url(normalize(path), read_only=read_only)


def stored_bytes(path: str | Path) -> int:
    """Bytes the cache's files take in the store (a listing: one request per prefix on object stores)."""
    if is_local(path):
        return sum(f.stat().st_size for f in local_path(path).rglob("*") if f.is_file())
    fs, root = remote_fs(path)
    return int(fs.du(root, total=True))


def remote_fs(path: str | Path):
    """(a synchronous fsspec file system, the path inside it) of a store URL, for listings and
    whole-object reads/writes outside zarr (zarr's own FsspecStore is asynchronous)."""
    import fsspec  # type: ignore[import-untyped]  # (no stubs; zarr depends on it)

    return fsspec.core.url_to_fs(normalize(path))


def write_beside(path: str | Path, suffix: str, data: bytes) -> None:
    """Write a plain file beside the cache at `path`, named after it (`<path><suffix>`): a local file
    atomically, on an object store one whole-object put. Not inside: zarr warns of every object in a
    group that is not its own."""
    if is_local(path):
        folder = local_path(path)
        atomic_write(folder.with_name(folder.name + suffix), data)
        return
    fs, root = remote_fs(path)
    fs.pipe_file(str(root).rstrip("/") + suffix, data)


def open_group(path: str | Path, mode: Literal["r", "r+"] = "r") -> zarr.Group:
    """The cache's root group; a storage fault (core/storage_errors.py) is one line naming its zarr.json."""
    with storage_errors(f"{path}/{ROOT_METADATA}"):
        return zarr.open_group(store_for(path, read_only=(mode == "r")), mode=mode, zarr_format=3)


# The root attributes of a cache whose creation has begun and not finished: its arrays are being
# created and no sample can have been written (writers open a cache by its record, which replaces
# this marker last). The next creation clears it and starts again, so a creation interrupted by a
# full disk or a kill is rerun like any other interrupted extraction.
CREATING = "diffseg_creation_in_progress"
ROOT_METADATA = "zarr.json"


def root_attributes(path: str | Path) -> dict | None:
    """The attributes of the Zarr group at `path`, or None when there is none."""
    if is_local(path):
        meta = local_path(path) / ROOT_METADATA
        if not meta.is_file():
            return None
        with storage_errors(meta):
            return dict(json.loads(meta.read_bytes()).get("attributes") or {})
    try:
        return dict(open_group(path, "r").attrs)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return None


def is_cache(path: str | Path) -> bool:
    """Whether a Zarr group exists at `path` (a cache to resume, or a group a resume refuses); a
    diffseg creation interrupted before its record was written is none (`creation_interrupted`)."""
    attrs = root_attributes(path)
    return attrs is not None and CREATING not in attrs


def creation_interrupted(path: str | Path) -> bool:
    """Whether `path` holds a cache whose creation began and never finished (holding no sample)."""
    attrs = root_attributes(path)
    return attrs is not None and CREATING in attrs


def root_exists(path: str | Path) -> bool:
    """Whether the cache root's zarr.json is still there: a deleted folder or a recreated bucket
    lose it. One stat on a local folder; on an object store one GET, never a listing cache."""
    if is_local(path):
        return os.path.isfile(os.path.join(local_path(path), ROOT_METADATA))
    fs, root = remote_fs(path)
    with storage_errors(f"{path}/{ROOT_METADATA}"):
        try:
            fs.cat_file(f"{root}/{ROOT_METADATA}")
        except FileNotFoundError:
            return False
    return True


def array(group: zarr.Group, name: str) -> zarr.Array:
    """The array `name` of a cache group (a DiffsegError-free invariant: callers checked it exists;
    a storage fault, such as a truncated zarr.json, is one line naming the file)."""
    with storage_errors(f"{group.store_path}/{name}/{ROOT_METADATA}"):
        node = group[name]
    assert isinstance(node, zarr.Array), f"{name} is not an array"
    return node


def has(group: zarr.Group, name: str) -> bool:
    """Whether the group holds a node `name` (reads its zarr.json: a damaged one is one line naming it)."""
    with storage_errors(f"{group.store_path}/{name}/{ROOT_METADATA}"):
        return name in group


def subgroup(group: zarr.Group, name: str) -> zarr.Group:
    with storage_errors(f"{group.store_path}/{name}/{ROOT_METADATA}"):
        node = group[name]
    assert isinstance(node, zarr.Group), f"{name} is not a group"
    return node


def create_per_sample_array(
    group: zarr.Group, name: str, n: int, per_sample_shape: tuple[int, ...], dtype, *, compressors, fill_value
) -> None:
    """[n, *per_sample_shape] with one chunk per sample: writers never share a chunk."""
    group.create_array(
        name,
        shape=(n, *per_sample_shape),
        chunks=(1, *per_sample_shape),
        dtype=dtype,
        compressors=compressors,
        fill_value=fill_value,
        overwrite=True,
    )


def create_feature_array(
    group: zarr.Group,
    name: str,
    n: int,
    per_sample_shape: tuple[int, ...],
    dtype,
    filters: tuple = (),
    checksum: bool = True,
) -> None:
    """A feature array (or a codec's per-sample part of one); `filters`: array-to-array codecs (bitround),
    which are followed by zstd level 1 (rounded mantissas leave runs of zero bits to squeeze);
    `checksum`: a crc32c trailer (False only for the packs of a cache written before checksums)."""
    if filters:
        group.create_array(
            name,
            shape=(n, *per_sample_shape),
            chunks=(1, *per_sample_shape),
            dtype=dtype,
            filters=filters,
            compressors=ROUNDED_COMPRESSORS if checksum else ROUNDED_COMPRESSORS[:1],
            fill_value=0,
            overwrite=True,
        )
        return
    compressors = FEATURE_COMPRESSORS if checksum else None
    create_per_sample_array(group, name, n, per_sample_shape, dtype, compressors=compressors, fill_value=0)


def delete_array(path: str | Path, name: str) -> None:
    """Delete array `name` (its zarr.json and every chunk) from the cache at `path`."""
    group = open_group(path, "r+")
    with storage_errors(f"{path}/{name}"):
        del group[name]


def create_shared_array(group: zarr.Group, name: str, value) -> None:
    """A small array shared by every sample (a codec's basis), one chunk, written at creation."""
    arr = group.create_array(
        name, shape=value.shape, chunks=value.shape, dtype=value.dtype, compressors=FEATURE_COMPRESSORS, overwrite=True
    )
    arr[...] = value


def create_label_array(group: zarr.Group, name: str, n: int, size_hw: tuple[int, int]) -> None:
    create_per_sample_array(group, name, n, size_hw, "uint8", compressors=LABEL_COMPRESSORS, fill_value=255)


def create_small_array(group: zarr.Group, name: str, n: int, per_sample_shape: tuple[int, ...], dtype) -> None:
    """A tiny uncompressed chunk per sample (status, orig_sizes)."""
    create_per_sample_array(group, name, n, per_sample_shape, dtype, compressors=None, fill_value=0)


def _codecs(array: zarr.Array) -> tuple:
    """The codec pipeline of a Zarr v3 array (caches are v3 only)."""
    meta = array.metadata
    assert isinstance(meta, ArrayV3Metadata), "diffseg caches are Zarr v3"
    return tuple(meta.codecs)


def without_checksum(codecs: dict) -> dict:
    """The record's codecs with the checksum layer dropped (what decides the array values)."""
    return {k: str(v).removesuffix(CHECKSUM_SUFFIX) for k, v in codecs.items()}


def chunk_layout(array: zarr.Array) -> tuple[str, bool] | None:
    """("raw" | "zstd", crc32c trailer?) when a chunk file is little-endian C-order bytes, maybe
    zstd-compressed, maybe followed by a 4-byte crc32c; None for any other codec pipeline."""
    codecs = list(_codecs(array))
    if codecs and getattr(codecs[0], "codec_name", None) == "numcodecs.bitround":
        codecs.pop(0)  # rounding is done at write time: decoding it is the identity
    crc = bool(codecs) and isinstance(codecs[-1], Crc32cCodec)
    if crc:
        codecs.pop()
    if not codecs or not isinstance(codecs[0], BytesCodec):
        return None
    if codecs[0].endian is not None and codecs[0].endian.value != "little":
        return None
    if len(codecs) == 1:
        return "raw", crc
    if len(codecs) == 2 and isinstance(codecs[1], ZstdCodec):
        return "zstd", crc
    return None


def plain_bytes(array: zarr.Array) -> bool:
    """True when a chunk file is exactly the little-endian C-order array bytes."""
    codecs = _codecs(array)
    return (
        len(codecs) == 1
        and isinstance(codecs[0], BytesCodec)
        and (codecs[0].endian is None or codecs[0].endian.value == "little")
    )
