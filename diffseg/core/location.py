"""Where a cache lives: a local folder or an fsspec URL (`s3://bucket/cache/gtav`, `gs://...`).

A location is kept as a string end to end: `Path("s3://b/c")` folds `//` into `/` and
names a local folder `s3:`. `file://` URLs are local folders. Credentials never travel in
a location (they would land in the cache record, the run records and log lines): fsspec
takes them from the environment or the usual config files (~/.aws, gcloud's ADC), and a
URL with a user or password in it is refused.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from diffseg.core.errors import DiffsegError

FILE_SCHEME = "file://"


def is_url(loc: str | Path) -> bool:
    """An fsspec URL of a remote store (object store), as opposed to a local folder."""
    s = str(loc)
    return "://" in s and not s.startswith(FILE_SCHEME)


def is_local(loc: str | Path) -> bool:
    return not is_url(loc)


def local_path(loc: str | Path) -> Path:
    """The folder of a local location (a path or a file:// URL)."""
    s = str(loc)
    assert not is_url(s), f"{s} is a remote URL"
    return Path(s[len(FILE_SCHEME) :] if s.startswith(FILE_SCHEME) else s)


def normalize(loc: str | Path) -> str:
    """A canonical string: an absolute resolved path for local folders, the URL without a trailing
    slash otherwise (after refusing credentials in it)."""
    s = str(loc)
    if is_local(s):
        return str(local_path(s).resolve())
    parts = urlsplit(s)
    if parts.username is not None or parts.password is not None:
        raise DiffsegError(
            f"{parts.scheme}://...@{parts.hostname}{parts.path}: credentials in a store URL are refused "
            "(they would be written into records and logs); set them in the environment or the usual config files"
        )
    if not parts.netloc:
        raise DiffsegError(f"{s}: a store URL needs a bucket, e.g. {parts.scheme}://bucket/cache/name")
    return s.rstrip("/")


def same(a: str | Path, b: str | Path) -> bool:
    return normalize(a) == normalize(b)


def name(loc: str | Path) -> str:
    """The last path segment (a run directory is named after its cache)."""
    return normalize(loc).rstrip("/").rsplit("/", 1)[-1]
