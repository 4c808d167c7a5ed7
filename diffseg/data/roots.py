"""Default dataset roots: `$DIFFSEG_DATA/<folder>`, else `data/<folder>` (DAFormer folder names)."""

from __future__ import annotations

import os
from pathlib import Path

from diffseg.core.errors import DiffsegError

FOLDERS = {
    "gtav": "gta",
    "synthia": "synthia",
    "cityscapes": "cityscapes",
    "bdd100k": "bdd100k",
    "mapillary": "mapillary",
    "acdc": "acdc",
    "darkzurich": "dark_zurich",
}


def default_root(name: str) -> Path:
    """Where dataset `name` is looked for when no root is given."""
    if name not in FOLDERS:
        raise DiffsegError(f"no default root for dataset {name!r} (known: {', '.join(FOLDERS)})")
    return Path(os.environ.get("DIFFSEG_DATA") or "data") / FOLDERS[name]


def resolve_root(name: str, root: Path | str | None) -> Path:
    """The given root, or the default one; a missing folder is a clear error saying where."""
    if root is not None:
        root = Path(root)
        if not root.is_dir():
            raise DiffsegError(f"{name} root {root} does not exist or is not a folder (--root)")
        return root
    path = default_root(name)
    if not path.is_dir():
        env = os.environ.get("DIFFSEG_DATA")
        where = f"$DIFFSEG_DATA={env}" if env else "data/ (DIFFSEG_DATA is not set)"
        raise DiffsegError(
            f"{name} dataset not found: looked in {path} (from {where}); "
            f"pass --root DIR or set DIFFSEG_DATA to the folder holding {FOLDERS[name]}/"
        )
    return path
