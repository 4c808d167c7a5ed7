"""Mapillary Vistas: `{training,validation}/images/<key>.jpg` + v1.2 palette labels (66 ids).

Labels sit in `{split}/labels/` (v1.2 zip) or `{split}/v1.2/labels/` (v2.0 zip). Two
incompatible 66 -> 19 conventions exist (tables.py); the one used is recorded in `info`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from diffseg.core.errors import DiffsegError
from diffseg.data.base import Entry, list_files, require_dir
from diffseg.data.options import DatasetOptions
from diffseg.data.readers import read_id_label
from diffseg.data.splits import check_split
from diffseg.data.tables import MAPILLARY_TABLES

FOLDERS = {"train": "training", "val": "validation"}


def list_entries(root: Path, split: str, opts: DatasetOptions) -> tuple[list[Entry], dict]:
    check_split("mapillary", split)
    if opts.mapillary_map not in MAPILLARY_TABLES:
        raise DiffsegError(f"unknown Mapillary convention {opts.mapillary_map!r}: use A or B")
    folder = root / FOLDERS[split]
    images = require_dir(folder / "images", "mapillary", split, f"{FOLDERS[split]}/images/<key>.jpg")
    candidates = (folder / "labels", folder / "v1.2" / "labels")
    labels = next((c for c in candidates if c.is_dir()), None)
    if labels is None:
        raise DiffsegError(
            f"mapillary {split}: no label folder: neither {candidates[0]} (v1.2 zip) nor {candidates[1]} (v2.0 zip)"
        )
    reader = partial(read_id_label, table=MAPILLARY_TABLES[opts.mapillary_map])
    entries = [
        Entry(id=p.stem, image=p, labels=((labels / f"{p.stem}.png", reader),)) for p in list_files(images, ".jpg")
    ]
    return entries, {"mapillary_map": opts.mapillary_map}
