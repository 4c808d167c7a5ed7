"""SYNTHIA-RAND-CITYSCAPES: `RGB/NNNNNNN.png` + 16-bit 3-channel `GT/LABELS/NNNNNNN.png` (class in R)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from diffseg.data.base import Entry, list_files, require_dir
from diffseg.data.gtav import require_split_file
from diffseg.data.options import DatasetOptions
from diffseg.data.readers import read_synthia_label
from diffseg.data.tables import SYNTHIA_TABLE


def list_entries(root: Path, split: str, opts: DatasetOptions) -> tuple[list[Entry], dict]:
    require_split_file("synthia", split, opts)
    images = require_dir(root / "RGB", "synthia", split, "RGB/NNNNNNN.png and GT/LABELS/NNNNNNN.png")
    reader = partial(read_synthia_label, table=SYNTHIA_TABLE)
    entries = [
        Entry(id=p.stem, image=p, labels=((root / "GT" / "LABELS" / p.name, reader),))
        for p in list_files(images, ".png")
    ]
    return entries, {}
