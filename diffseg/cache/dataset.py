"""FeatureDataset: a torch Dataset over the complete samples of a cache (stage two's input).

item = {"index": int (sample index in the cache),
        "label": LongTensor[H, W] (train ids, 255 ignore),
        "feats": {branch: {layer: HalfTensor[S', C, h, w]}}}   S' = len(step_indices)

With `encoded=True` an int8 or pca array is its stored parts instead, {suffix: tensor} (codecs.py),
and `dataset.decoder(device)(batch["feats"])` expands a collated batch on the device (the trainer);
without it (eval, predict, ablate) the dataset decodes on the CPU and the item is as above.

Features stay float16 on purpose: half the bytes through the worker queue and the pinned
copy; the trainer converts them on the device (`x.to(device, non_blocking=True).float()`).

Training reads through loader.py (reader threads filling batch buffers: `layout()` and
`read_into()`); the Dataset protocol stays for tools and tests. The dataset is picklable
before and after use: it keeps the path and the selection, and each process opens its own
CacheReader on first access. With
`in_memory=True` the selection is loaded into RAM on first use (call `preload()` in the
main process before creating the DataLoader, so forked workers share the pages).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from diffseg.cache import schema
from diffseg.cache.codecs import FeatureDecoder
from diffseg.cache.reader import CacheReader
from diffseg.core.errors import DiffsegError


class FeatureDataset(Dataset):
    def __init__(
        self,
        path: str | Path,
        branches: Sequence[str],
        layers: Sequence[str],
        step_indices: Sequence[int] | None = None,
        in_memory: bool = False,
        encoded: bool = False,
        indices: Sequence[int] | None = None,
    ):
        reader = CacheReader(path)
        self.path = path
        self.branches = tuple(branches)
        self.layers = tuple(layers)
        n_steps = len(reader.save_steps)
        self.step_indices = tuple(range(n_steps)) if step_indices is None else tuple(int(s) for s in step_indices)
        for s in self.step_indices:
            if not 0 <= s < n_steps:
                raise DiffsegError(f"step index {s} is outside {path}'s {n_steps} saved steps {reader.save_steps}")
        have = set(reader.feature_names())
        for b in self.branches:
            for layer in self.layers:
                if schema.feature_name(b, layer) not in have:
                    raise DiffsegError(f"{path} has no {b}/{layer} (it holds {sorted(have)})")
        # dataset position -> cache sample index: the given samples (a run's record), else every complete one
        self.indices = reader.complete_indices() if indices is None else [int(i) for i in indices]
        self.in_memory = in_memory
        # encoded: int8/pca arrays are handed over as their stored parts ({suffix: tensor}), expanded
        # on the training device by `decoder(device)` (a RAM copy holds them decoded)
        self.encoded = encoded
        self.coded = {k for k in self._names() if reader.expands(k)} if encoded and not in_memory else set()
        self._plain = {k for k in self._names() if k not in self.coded} | {schema.LABELS}
        self._suffixes = {k: set(reader.codec(k).stored(reader.array_shape(k))) for k in self.coded}
        self._reader: CacheReader | None = None
        self._memory: dict[str, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_reader"] = None  # each process opens its own
        return state

    @property
    def reader(self) -> CacheReader:
        if self._reader is None:
            self._reader = CacheReader(self.path)
        return self._reader

    def _names(self) -> list[str]:
        return [schema.feature_name(b, layer) for b in self.branches for layer in self.layers]

    def _load(self, i: int, out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        names = [k for k in self._names() if k not in self.coded] + [schema.LABELS]
        return self.reader.read(i, names, steps=self.step_indices, out=out)

    def decoder(self, device: torch.device | str, fold: bool = False) -> FeatureDecoder:
        """Expands a batch's "feats" on `device` into float32 [B, S, C, h, w] (codecs.decode); with
        `fold`, the layers of `fold_bases()` stay coefficients [B, S, k, h, w] (the model folds them)."""
        r = self.reader
        shared = {k: r.shared(k) for k in self._names() if r.shared(k)}
        keep = set(self.fold_bases()) if fold else set()
        return FeatureDecoder({k: r.codec(k) for k in self._names()}, shared, device, keep)

    def fold_bases(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{layer: (basis [C, k], mean [C])} of the selected layers that every selected branch reads as
        pca coefficients on one basis (what a fusion block can fold: `DiffFusion.fold`)."""
        out = {}
        for layer in self.layers:
            names = [schema.feature_name(b, layer) for b in self.branches]
            if not all(k in self.coded and self.reader.codec(k).name == "pca" for k in names):
                continue
            bases = [self.reader.shared(k) for k in names]
            first = bases[0]
            if first[".basis"].shape[1] >= first[".basis"].shape[0]:  # k = C: a rotation, nothing saved
                continue
            if all(all(np.array_equal(b[s], first[s]) for s in first) for b in bases[1:]):
                out[layer] = (first[".basis"], first[".mean"])
        return out

    # -- the stored arrays of a sample (loader.py reads them into its batch buffers) ------------
    def layout(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """{array name: (per-sample shape of the selection, stored dtype)}: the selected features
        (branch/layer, steps subset) and the labels, as stored (no decode)."""
        r, out = self.reader, {}
        S = len(self.step_indices)
        for name in self._names():
            if name in self.coded:  # its stored parts, as the codec wrote them
                for suffix, (shape, dtype) in r.codec(name).stored(r.array_shape(name)).items():
                    out[name + suffix] = ((S, *shape[1:]), np.dtype(dtype))
            else:
                out[name] = ((S, *r.array_shape(name)[1:]), r.source(name).dtype)
        out[schema.LABELS] = (r.array_shape(schema.LABELS), r.source(schema.LABELS).dtype)
        return out

    def read_into(self, pos: int, out: dict[str, np.ndarray]) -> None:
        """Dataset position `pos`'s arrays into `out` {name: C-contiguous array of layout()'s shape};
        safe to call from several threads at once (the reads release the GIL)."""
        if self.in_memory:
            mem = self.preload()
            for name, dst in out.items():
                dst[...] = mem[name][pos].numpy()
        else:
            i = self.indices[pos]
            self._load(i, out={k: v for k, v in out.items() if k in self._plain})
            if self.coded:  # every layer's parts of one pack in one read of it, straight into `out`
                self.reader.read_stored(i, sorted(self.coded), self.step_indices, out=out)

    def batch_feats(self, arrays: dict[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
        """{branch: {layer: tensor, or {suffix: tensor} for a coded array}} from layout()'s arrays."""
        parts: dict[str, dict[str, torch.Tensor]] = {}
        for key, t in arrays.items():
            for name in self.coded:
                if key.startswith(name) and key[len(name) :] in self._suffixes[name]:
                    parts.setdefault(name, {})[key[len(name) :]] = t
        return {
            b: {
                layer: parts[n] if (n := schema.feature_name(b, layer)) in self.coded else arrays[n]
                for layer in self.layers
            }
            for b in self.branches
        }

    def __getitem__(self, pos: int) -> dict:
        i = self.indices[pos]
        arrays: dict[str, Any]
        if self.in_memory:
            mem = self.preload()
            # a view would make a worker process share (copy into shm) the whole RAM copy
            in_worker = torch.utils.data.get_worker_info() is not None
            arrays = {k: v[pos].clone() if in_worker else v[pos] for k, v in mem.items()}
            label = arrays.pop(schema.LABELS).long()
        else:
            np_arrays = self._load(i)
            label = torch.from_numpy(np_arrays.pop(schema.LABELS)).long()
            arrays = {k: torch.from_numpy(v) for k, v in np_arrays.items()}
            stored = self.reader.read_stored(i, sorted(self.coded), self.step_indices) if self.coded else {}
            for k, parts in stored.items():
                arrays[k] = {s: torch.from_numpy(v) for s, v in parts.items()}
        feats = {b: {layer: arrays[schema.feature_name(b, layer)] for layer in self.layers} for b in self.branches}
        return {"index": i, "label": label, "feats": feats}

    def orig_label(self, i: int) -> np.ndarray:
        """The original-resolution label of cache sample i, uint8[h, w] (evaluation caches)."""
        return self.reader.orig_label(i)

    # -- in memory ----------------------------------------------------------------------
    def selection_bytes(self) -> int:
        per = sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in self.layout().values())
        return per * len(self)

    def preload(self) -> dict[str, torch.Tensor]:
        """Load the selection into RAM once: {name: Tensor[n, ...]}; refuses when it cannot fit."""
        if self._memory is not None:
            return self._memory
        need, avail = self.selection_bytes(), available_memory()
        if need > 0.8 * avail:
            raise DiffsegError(
                f"--in-memory needs {need / 2**30:.2f} GiB for {len(self)} samples of {self.path}, "
                f"but only {avail / 2**30:.2f} GiB of memory is available: drop --in-memory or "
                "select fewer layers/steps"
            )
        mem = {}
        for name, (shape, dtype) in self.layout().items():
            mem[name] = torch.from_numpy(np.empty((len(self), *shape), dtype))
        for pos, i in enumerate(self.indices):  # read straight into the RAM copy
            self._load(i, out={name: t[pos].numpy() for name, t in mem.items()})
        self._memory = mem
        return mem


def available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable on Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
