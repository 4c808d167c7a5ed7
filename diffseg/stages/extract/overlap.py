"""Overlapped extraction: three stages in three threads with bounded queues.

    loader thread    prepare(i): read, decode, view (crop, flip, photometric), content digest
    calling thread   compute(batch): the U-Net trajectory of a batch (torch, this thread)
    writer thread    write(item, arrays): every chunk of the sample, its status last

While the U-Net runs on batch k, batch k+1 is being prepared and batch k-1 written. Each queue
holds at most `depth` items (a batch), so at most about three batches are alive at once, whatever
the number of samples (benchmarks/bench_memory.py). File reads, image decoding, numpy and the
writes release the GIL for most of their time, so on a machine with a core to spare the two
helpers cost the U-Net thread little.

Outcomes come back in index order, after their sample's write. An exception in a helper thread
is re-raised in the calling thread as it was raised (a DiffsegError stays one line naming the
file); the helpers stop at once, a write in progress finishes (so the status-last rule holds),
and nothing later is written. `overlap=False` runs the same three steps one after another in the
calling thread (benchmarks compare the two).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

_END = object()  # end of a stream
_POLL_S = 0.05  # how often a blocked helper looks at the stop flag


class _Failed:
    """An exception raised in a helper thread, carried to the calling thread."""

    def __init__(self, err: BaseException):
        self.err = err


def batches(items: Iterable[Any], key: Callable[[Any], int]) -> Iterator[list[Any]]:
    """Consecutive items with equal key(item) as one list (items arrive sorted by key)."""
    cur: list[Any] = []
    for item in items:
        if cur and key(item) != key(cur[0]):
            yield cur
            cur = []
        cur.append(item)
    if cur:
        yield cur


def run(
    indices: Iterable[int],
    prepare: Callable[[int], Any],
    compute: Callable[[list[Any]], tuple[list[tuple[Any, Any]], bool]],
    write: Callable[[Any, Any], Any],
    key: Callable[[Any], int],
    depth: int = 1,
    overlap: bool = True,
) -> Generator[Any, None, None]:
    """Yield write(item, result) for every (item, result) that compute returns, in order (None
    from write is not yielded). compute gets the prepared items of one batch (equal key) and
    returns (the pairs to write, whether to go on): False ends the run after those pairs
    (--strict at a bad sample)."""
    if not overlap:
        for batch in batches(map(prepare, indices), key):
            pairs, more = compute(batch)
            for item, result in pairs:
                out = write(item, result)
                if out is not None:
                    yield out
            if not more:
                return
        return
    yield from _Overlapped(indices, prepare, compute, write, key, max(1, depth)).outcomes()


class _Overlapped:
    def __init__(self, indices, prepare, compute, write, key, depth: int):
        self.indices, self.prepare, self.compute, self.write, self.key = list(indices), prepare, compute, write, key
        self.loaded: queue.Queue = queue.Queue(maxsize=depth)
        self.to_write: queue.Queue = queue.Queue(maxsize=depth)
        self.done: queue.Queue = queue.Queue()  # outcomes: small, unbounded
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._load, name="diffseg-extract-load", daemon=True),
            threading.Thread(target=self._write, name="diffseg-extract-write", daemon=True),
        ]

    # -- helper threads ----------------------------------------------------------------------
    def _put(self, q: queue.Queue, item) -> bool:
        """Put, waiting for room unless the run stops; -> whether it was put."""
        while not self.stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue):
        """Get, waiting unless the run stops (-> _END then)."""
        while not self.stop.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return _END

    def _load(self) -> None:
        try:
            for i in self.indices:
                if self.stop.is_set() or not self._put(self.loaded, self.prepare(i)):
                    return
            self._put(self.loaded, _END)
        except BaseException as err:  # carried to the calling thread, re-raised there
            self.stop.set()
            self.done.put(_Failed(err))

    def _write(self) -> None:
        try:
            while (msg := self._get(self.to_write)) is not _END:
                out = self.write(*msg)
                if out is not None:
                    self.done.put(out)
            if not self.stop.is_set():
                self.done.put(_END)
        except BaseException as err:  # carried to the calling thread, re-raised there
            self.stop.set()
            self.done.put(_Failed(err))

    # -- calling thread ------------------------------------------------------------------------
    def _prepared(self) -> Iterator[Any]:
        while True:
            try:
                item = self.loaded.get(timeout=_POLL_S)
            except queue.Empty:
                self._check()
                continue
            if item is _END:
                return
            yield item

    def _check(self) -> None:
        """Re-raise a helper's exception (the loader's or the writer's) here."""
        if self.stop.is_set():
            while True:
                msg = self.done.get()
                if isinstance(msg, _Failed):
                    raise msg.err

    def _drain(self, block: bool) -> Iterator[Any]:
        """Outcomes written so far (block: until the writer's end)."""
        while True:
            try:
                msg = self.done.get(timeout=_POLL_S) if block else self.done.get_nowait()
            except queue.Empty:
                if block:
                    self._check()
                    continue
                return
            if msg is _END:
                return
            if isinstance(msg, _Failed):
                raise msg.err
            yield msg

    def outcomes(self) -> Iterator[Any]:
        for t in self.threads:
            t.start()
        try:
            for batch in batches(self._prepared(), self.key):
                pairs, more = self.compute(batch)
                for pair in pairs:
                    if not self._put(self.to_write, pair):
                        self._check()
                yield from self._drain(block=False)
                if not more:
                    break
            self._check()
            if not self._put(self.to_write, _END):
                self._check()
            yield from self._drain(block=True)
        finally:
            self.stop.set()  # helpers stop; a write in progress finishes first
            for t in self.threads:
                t.join()
