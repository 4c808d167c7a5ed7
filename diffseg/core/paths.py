"""Where diffseg keeps its own small per-user caches (weight fingerprints, class statistics):
`$DIFFSEG_CACHE_DIR`, else `$XDG_CACHE_HOME/diffseg`, else `~/.cache/diffseg`."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir(kind: str) -> Path:
    """The folder of one kind of sidecar, e.g. user_cache_dir("fingerprints")."""
    root = os.environ.get("DIFFSEG_CACHE_DIR")
    if root is None:
        root = str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "diffseg")
    return Path(root) / kind
