"""GTAV: `images/NNNNN.png` + palette `labels/NNNNN.png` whose pixel index is a Cityscapes id.

Every image is `train` (DG practice); `val` exists only through a split file.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from diffseg.core.errors import DiffsegError
from diffseg.data.base import Entry, list_files, require_dir
from diffseg.data.options import DatasetOptions
from diffseg.data.readers import read_id_label
from diffseg.data.splits import check_split
from diffseg.data.tables import CITYSCAPES_TABLE


def require_split_file(name: str, split: str, opts: DatasetOptions) -> None:
    """GTAV/Synthia: `train` is every image; `val` needs a split file; nothing else exists."""
    check_split(name, split)
    if split == "val" and opts.split_file is None:
        raise DiffsegError(f"{name} has no val split: every image is train; pass --split-file FILE to define one")


def list_entries(root: Path, split: str, opts: DatasetOptions) -> tuple[list[Entry], dict]:
    require_split_file("gtav", split, opts)
    images = require_dir(root / "images", "gtav", split, "images/NNNNN.png and labels/NNNNN.png")
    reader = partial(read_id_label, table=CITYSCAPES_TABLE)
    entries = [
        Entry(id=p.stem, image=p, labels=((root / "labels" / p.name, reader),)) for p in list_files(images, ".png")
    ]
    return entries, {}
