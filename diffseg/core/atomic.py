"""Atomic file replacement: the one way diffseg writes a file that a reader (or a resumed run) may
open while it is being written, or after a crash.

The new content goes to a temporary file beside the target, named
`<target>.<random>.partial` (unique per call, so concurrent writers such as DDP ranks never
share one), and is renamed over the target. A reader sees the old file or the new one, never a
partial one; a crash leaves at most a `*.partial` file, which no reader opens; a failure removes
the temporary file and re-raises. The file gets the mode the umask gives any new file (0644
under umask 022), whatever the library that wrote the temporary chose (safetensors makes 0600).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

PARTIAL_SUFFIX = ".partial"


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (os.umask sets it too)."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _umask()  # read once, at import (before any thread could create a file meanwhile)


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike, *, fsync: bool = False, exclusive: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s new content to (for writers that take a path,
    such as torch.save or safetensors); on a clean exit it replaces `path`. `fsync` flushes the
    content to the device before the rename (checkpoints: a power cut keeps old or new).
    `exclusive`: create `path` or raise FileExistsError, never replace it (of processes racing to
    create one file, exactly one succeeds: a hard link, which fails on an existing name)."""
    target = Path(path)
    tmp = target.with_name(f"{target.name}.{uuid.uuid4().hex}{PARTIAL_SUFFIX}")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~UMASK)
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        if exclusive:
            os.link(tmp, target)
            os.unlink(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(
    path: str | os.PathLike, data: bytes | str | Iterable[bytes], *, fsync: bool = False, exclusive: bool = False
) -> None:
    """`path` := data (bytes, text as UTF-8, or an iterable of buffers written one after another);
    `exclusive`: only if `path` does not exist (else FileExistsError; atomic_target)."""
    with atomic_target(path, fsync=fsync, exclusive=exclusive) as tmp, open(tmp, "wb") as f:
        if isinstance(data, str):
            f.write(data.encode())
        elif isinstance(data, bytes | bytearray | memoryview):
            f.write(data)
        else:
            for part in data:
                f.write(part)
