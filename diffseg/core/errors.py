"""User-facing errors: the CLI prints their message as one line on stderr and exits 1.

Raise `DiffsegError` (or a subclass) for anything a user can fix: a missing file, a
corrupt label, a cache that does not match. Use `assert` for our own invariants.
"""


class DiffsegError(ValueError):
    """A problem found while working; the message names the file/value and the problem."""


class DataError(DiffsegError):
    """A dataset file is missing, unreadable or inconsistent (carries the path)."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        # Picklable across dask/DataLoader process boundaries (the default passes one arg).
        return (type(self), (self.path, self.problem))


class CacheMismatch(DiffsegError):
    """A cache does not match what it was asked for; names both values."""
