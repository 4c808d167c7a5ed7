"""BatchLoader: stage two's input, read by threads into (pinned) batch buffers and prefetched.

The batches are given (lists of dataset positions, in order: stages/train/sampling.py decides
them); the loader only reads what it is told, so batch contents and order are the sampler's,
whatever the number of readers (exact resume and DDP rely on it). Per batch:

- one buffer per stored array of the selection, [B, *shape] in the stored dtype
  (FeatureDataset.layout(); no decode here: a codec's expansion runs on the device after the
  copy), pinned when the device is CUDA (a pool of buffers, reused once their copy finished),
  plain fresh memory on CPU;
- `readers` threads fill sample j of the batch with `FeatureDataset.read_into` (file reads
  with readinto and numpy copies release the GIL), several batches ahead (bounded: at most
  `depth` batches in flight, fewer when they are large);
- the consumer gets {"index": LongTensor[B] (cache indices), "label": LongTensor[B, H, W],
  "feats": {branch: {layer: Tensor[B, S', C, h, w]}}} on the device (copies non_blocking);
  the label goes over the bus as stored (uint8) and widens on the device.

No worker processes, no per-sample pickling or shared-memory copies (DataLoader workers
reached 0.24-0.27 of a raw read on SD-shaped samples and 0.03 on small ones;
benchmarks/bench_loader.py). `readers=0` reads in the consumer's thread, without prefetch.
A reader's exception (a corrupt chunk's DiffsegError) is raised, unchanged, by the `next()`
that wanted its batch; `close()` (also on exceptions, via `with`) cancels what is queued and
joins the threads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from diffseg.cache import schema
from diffseg.cache.dataset import FeatureDataset

IN_FLIGHT_BYTES = 1 << 30  # prefetched batch buffers beyond the first two stay under 1 GiB


@dataclass
class _Slot:
    """The host buffers of one batch: {name: Tensor[B, ...]} and their numpy views."""

    tensors: dict[str, torch.Tensor]
    arrays: dict[str, np.ndarray]
    copied: torch.cuda.Event | None = None  # recorded after its device copy was issued (CUDA)
    size: int = 0

    @classmethod
    def allocate(cls, layout: dict[str, tuple[tuple[int, ...], np.dtype]], batch: int, pin: bool) -> _Slot:
        tensors = {}
        for name, (shape, dtype) in layout.items():
            t = torch.from_numpy(np.empty((batch, *shape), dtype))
            tensors[name] = t.pin_memory() if pin else t
        return cls(tensors=tensors, arrays={k: t.numpy() for k, t in tensors.items()}, size=batch)


@dataclass
class _Pending:
    positions: list[int]
    slot: _Slot
    reads: list[Future] = field(default_factory=list)


class BatchLoader:
    """Iterate the batches `batches` (dataset positions) of `data` on `device`."""

    def __init__(
        self,
        data: FeatureDataset,
        batches: Iterable[Sequence[int]],
        *,
        device: torch.device,
        readers: int = 2,
        depth: int = 4,
    ):
        if readers < 0:
            raise ValueError(f"readers must be >= 0, got {readers}")
        self.data, self.device, self.readers = data, torch.device(device), readers
        self.layout = data.layout()
        for name in self.layout:  # open every array here, not racing in the threads
            data.reader.source(name)
        if data.in_memory:
            data.preload()
        self._batches: Iterator[Sequence[int]] = iter(batches)
        self._pin = self.device.type == "cuda"
        self._pool: list[_Slot] = []  # reusable pinned slots (CUDA)
        self._queue: deque[_Pending] = deque()
        self._pool_exec = ThreadPoolExecutor(readers, thread_name_prefix="diffseg-reader") if readers else None
        sample_bytes = sum(int(np.prod(s)) * d.itemsize for s, d in self.layout.values())
        self._sample_bytes = max(1, sample_bytes)
        self._depth = max(1, depth) if readers else 0
        self._closed = False

    # -- iteration -------------------------------------------------------------------------------
    def __iter__(self) -> BatchLoader:
        return self

    def __next__(self) -> dict:
        if self._closed:
            raise StopIteration
        try:
            self._fill()
            if self._queue:
                pending = self._queue.popleft()
                for read in pending.reads:
                    read.result()  # a reader's exception surfaces here, as raised
            else:
                positions = next(self._batches, None)
                if positions is None:
                    self.close()
                    raise StopIteration
                pending = self._submit(list(positions), inline=True)
            return self._deliver(pending)
        except BaseException:
            self.close()
            raise

    def _fill(self) -> None:
        """Queue batches until `depth` are in flight (or their bytes pass IN_FLIGHT_BYTES)."""
        while self._pool_exec is not None and len(self._queue) < self._depth:
            queued = sum(len(p.positions) for p in self._queue) * self._sample_bytes
            if len(self._queue) >= 2 and queued >= IN_FLIGHT_BYTES:
                return
            positions = next(self._batches, None)
            if positions is None:
                return
            self._queue.append(self._submit(list(positions), inline=False))

    def _submit(self, positions: list[int], inline: bool) -> _Pending:
        """One task per batch: the threads work on different batches (several are in flight),
        so a small sample costs one hand-off per batch, not one per sample."""
        pending = _Pending(positions=positions, slot=self._slot(len(positions)))
        if inline or self._pool_exec is None:
            self._read_batch(positions, pending.slot)
        else:
            pending.reads.append(self._pool_exec.submit(self._read_batch, positions, pending.slot))
        return pending

    def _read_batch(self, positions: list[int], slot: _Slot) -> None:
        for j, pos in enumerate(positions):
            self.data.read_into(pos, {name: a[j] for name, a in slot.arrays.items()})

    def _slot(self, batch: int) -> _Slot:
        for k, slot in enumerate(self._pool):
            if slot.size == batch:
                self._pool.pop(k)
                if slot.copied is not None:
                    slot.copied.synchronize()  # its previous batch has left for the device
                return slot
        return _Slot.allocate(self.layout, batch, self._pin)

    def _deliver(self, pending: _Pending) -> dict:
        slot, dev = pending.slot, self.device
        moved = {k: t.to(dev, non_blocking=True) for k, t in slot.tensors.items()}
        if self._pin:
            slot.copied = torch.cuda.Event()
            slot.copied.record()
            self._pool.append(slot)  # reused once `copied` has passed
        label = moved.pop(schema.LABELS).long()
        index = torch.tensor([int(self.data.indices[p]) for p in pending.positions], dtype=torch.long)
        feats = self.data.batch_feats(moved)
        return {"index": index, "label": label, "feats": feats}

    # -- shutdown --------------------------------------------------------------------------------
    def close(self) -> None:
        """Cancel queued reads, wait for running ones, join the threads (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for pending in self._queue:
            for read in pending.reads:
                read.cancel()
        self._queue.clear()
        if self._pool_exec is not None:
            self._pool_exec.shutdown(wait=True, cancel_futures=True)
        self._pool.clear()

    def __enter__(self) -> BatchLoader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
