"""Which samples of a cache a run reads: every complete one, refused while some are still pending.

A cache whose extraction is still running (or was interrupted) has pending samples: training or
scoring on it would silently use a subset, and its record (caches.json, the eval report) would
name the whole cache. `samples_used` refuses it with one line giving the count, unless the user
passes --allow-partial; the run then records what it read (`Usage.record`). Samples skipped for a
recorded reason (an unreadable image) are not pending: a finished cache with them is complete.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffseg.cache import CacheReader
from diffseg.core.errors import DiffsegError


@dataclass(frozen=True)
class Usage:
    path: str  # the cache
    samples: int  # N
    indices: tuple[int, ...]  # the complete samples read, cache order
    pending: int  # samples still pending when the run opened the cache

    def check(self, allow_partial: bool) -> Usage:
        """self; a DiffsegError when samples are pending and `allow_partial` is off."""
        if self.pending and not allow_partial:
            raise DiffsegError(
                f"{self.path}: {self.pending} of {self.samples} samples are still pending (its extraction is "
                "running or was interrupted): finish it (rerun extract), or pass --allow-partial to use the "
                f"{len(self.indices)} complete ones"
            )
        return self

    def record(self) -> dict:
        """What a run's record adds: nothing for a complete cache; else the pending count and the
        indices of the samples used."""
        if not self.pending:
            return {}
        return {"partial": {"pending": self.pending, "used": len(self.indices), "indices": list(self.indices)}}


def usage_of(reader: CacheReader) -> Usage:
    """The cache's complete and pending samples, as its status markers say now."""
    pending = len(reader.pending_indices())
    return Usage(path=str(reader.path), samples=reader.n, indices=tuple(reader.complete_indices()), pending=pending)


def samples_used(reader: CacheReader, allow_partial: bool) -> Usage:
    """The complete samples of the cache a run reads; a DiffsegError when some are pending and
    `allow_partial` is off."""
    return usage_of(reader).check(allow_partial)
