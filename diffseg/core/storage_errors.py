"""The storage faults users meet, each as one line: the one table of them (`FAULTS`).

Opening or writing a cache, a run or any file diffseg keeps fails in a few ways that only the
user can fix: a bucket that does not exist, credentials the server refuses, an endpoint that
cannot be reached, a read-only mount, a full disk, a metadata file cut short. Each is a row
below: what identifies it, and what happened and what to do. `storage_error(err, where)` turns
such an error into a `DiffsegError` naming `where` (the CLI prints it as one line, exit 1);
`storage_errors(where)` does it for a block of code. Any other error is not in the table and
goes on as it is: a bug keeps its traceback.

Object-store errors arrive through fsspec (s3fs translates the service's error codes into
OSError subclasses and keeps the service's answer as the cause; botocore's connection errors
arrive as they are): the rows look at the error, its errno and the service's error code.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from diffseg.core.errors import DiffsegError


@dataclass(frozen=True, kw_only=True)
class Fault:
    name: str  # the fault, as the guarantees table names it
    matches: Callable[[BaseException], bool]
    says: str  # what happened and what to do; {err} is the error's own words


def service_code(err: BaseException) -> str | None:
    """The object store's error code ("NoSuchBucket", "AccessDenied", ...) behind `err`, if any."""
    seen: BaseException | None = err
    for _ in range(8):  # the cause chain is short; never loop on a cycle
        if seen is None:
            return None
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            return response.get("Error", {}).get("Code")
        seen = seen.__cause__ or seen.__context__
    return None


def _errno(*codes: int) -> Callable[[BaseException], bool]:
    return lambda err: isinstance(err, OSError) and err.errno in codes


def _unreachable(err: BaseException) -> bool:
    """A connection that could not be made (refused, no route, DNS, connect timeout)."""
    if isinstance(err, ConnectionError):
        return True
    boto = sys.modules.get("botocore.exceptions")  # loaded when s3fs is in use; never imported here
    return boto is not None and isinstance(err, boto.ConnectionError)


def _denied(err: BaseException) -> bool:
    return isinstance(err, PermissionError) or service_code(err) in ("AccessDenied", "InvalidAccessKeyId", "403")


FAULTS: tuple[Fault, ...] = (  # the first row that matches speaks
    Fault(
        name="no such bucket",
        matches=lambda err: service_code(err) == "NoSuchBucket",
        says="the bucket does not exist ({err}): create it, or correct the URL",
    ),
    Fault(
        name="access denied (wrong credentials, no permission)",
        matches=_denied,
        says="access denied ({err}): check the permissions, and for an object store the credentials "
        "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or ~/.aws for s3://) and the bucket's policy",
    ),
    Fault(
        name="endpoint unreachable",
        matches=_unreachable,
        says="cannot reach the storage endpoint ({err}): check the endpoint URL (AWS_ENDPOINT_URL for s3://) "
        "and the network",
    ),
    Fault(
        name="read-only file system",
        matches=_errno(errno.EROFS),
        says="read-only file system ({err}): write to a writable location, or mount it read-write",
    ),
    Fault(
        name="no space left (or over quota)",
        matches=_errno(errno.ENOSPC, errno.EDQUOT),
        says="no space left on the device ({err}): free space (or raise the quota) and rerun; "
        "an extraction resumes where it stopped",
    ),
    Fault(
        name="truncated or damaged metadata",
        matches=lambda err: isinstance(err, json.JSONDecodeError | UnicodeDecodeError),
        says="damaged metadata, not valid JSON ({err}): the file was cut short or edited; restore it, "
        "or delete the cache and extract again",
    ),
)


def fault_of(err: BaseException) -> Fault | None:
    return next((f for f in FAULTS if f.matches(err)), None)


def storage_error(err: BaseException, where: str | os.PathLike | None = None) -> DiffsegError | None:
    """The one-line DiffsegError of a fault in `FAULTS` (naming `where`, else the error's file), or None."""
    if isinstance(err, DiffsegError):
        return None  # already one line
    fault = fault_of(err)
    if fault is None:
        return None
    where = where if where is not None else getattr(err, "filename", None)
    words = err.strerror if isinstance(err, OSError) and err.strerror and where is not None else str(err)
    line = fault.says.format(err=words or type(err).__name__)
    return DiffsegError(f"{where}: {line}" if where is not None else line)


@contextmanager
def storage_errors(where: str | os.PathLike) -> Iterator[None]:
    """Raise a fault of `FAULTS` inside the block as its one line naming `where`; others pass unchanged."""
    try:
        yield
    except Exception as err:
        mapped = storage_error(err, where)
        if mapped is None:
            raise
        raise mapped from err
