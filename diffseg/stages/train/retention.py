"""Which checkpoints a run keeps: the newest `keep` (at least 2, so a damaged newest checkpoint
has one before it to fall back to), plus any the caller protects (e.g. a best-scoring one)."""

from __future__ import annotations

from collections.abc import Iterable

from diffseg.core.errors import DiffsegError

KEEP = 2  # checkpoints kept by default


def check_keep(keep: int) -> int:
    if keep < 2:
        raise DiffsegError(
            f"--keep-checkpoints {keep}: keep at least 2, so a damaged newest checkpoint has one before it to fall back to"
        )
    return keep


def to_drop(iterations: Iterable[int], keep: int, protect: Iterable[int] = ()) -> list[int]:
    """The iterations to delete: all but the newest `keep`, minus the protected ones; oldest first."""
    ordered = sorted(set(iterations))
    kept = set(ordered[-check_keep(keep) :]) | set(protect)
    return [it for it in ordered if it not in kept]
