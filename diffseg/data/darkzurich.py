"""Dark Zurich: labelled `val` only (`rgb_anon/val/night/<seq>/` + `gt/val/night/<seq>/`).

The test split is scored on the benchmark server and train has no labels.
"""

from __future__ import annotations

from pathlib import Path

from diffseg.core.errors import DiffsegError
from diffseg.data.acdc import paired_entries
from diffseg.data.base import Entry, require_dir
from diffseg.data.options import DatasetOptions


def list_entries(root: Path, split: str, opts: DatasetOptions) -> tuple[list[Entry], dict]:
    if split != "val":
        raise DiffsegError(f"Dark Zurich has labels for val only (got split {split!r}): use --split val")
    images = require_dir(root / "rgb_anon" / "val", "darkzurich", split, "rgb_anon/val/night/<seq>/*_rgb_anon.png")
    return paired_entries(images, root / "gt" / "val"), {}
