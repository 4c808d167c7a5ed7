"""One way to rebuild a frozen config dataclass from its JSON record (docs/contributing.md §2).

JSON turns tuples into lists and cannot say which keys a config knows: `from_record`
refuses unknown keys (a record from another diffseg version, a typo in a hand-edited
file) with a one-line error, and restores the tuple fields.
"""

from __future__ import annotations

from dataclasses import fields

from diffseg.core.errors import DiffsegError


def from_record(cls, record: dict, *, tuples=()):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(record) - known)
    if unknown:
        raise DiffsegError(f"unknown {cls.__name__} fields {unknown}")
    return cls(**{k: tuple(v) if k in tuples else v for k, v in record.items()})
