"""BDD100K semantic segmentation (10k): masks already hold train ids.

Current layout: `images/10k/{split}/<id>.jpg` + `labels/sem_seg/masks/{split}/<id>.png`.
Legacy zip:     `seg/images/{split}/<id>.jpg` + `seg/labels/{split}/<id>_train_id.png`.
"""

from __future__ import annotations

from pathlib import Path

from diffseg.core.errors import DiffsegError
from diffseg.data.base import Entry, list_files
from diffseg.data.options import DatasetOptions
from diffseg.data.readers import read_train_id_label
from diffseg.data.splits import check_split


def list_entries(root: Path, split: str, opts: DatasetOptions) -> tuple[list[Entry], dict]:
    check_split("bdd100k", split)
    current, legacy = root / "images" / "10k" / split, root / "seg" / "images" / split
    if current.is_dir():
        images, labels, suffix = current, root / "labels" / "sem_seg" / "masks" / split, ".png"
    elif legacy.is_dir():
        images, labels, suffix = legacy, root / "seg" / "labels" / split, "_train_id.png"
    else:
        raise DiffsegError(f"bdd100k {split}: neither {current} nor {legacy} (legacy zip layout) exists")
    entries = [
        Entry(id=p.stem, image=p, labels=((labels / f"{p.stem}{suffix}", read_train_id_label),))
        for p in list_files(images, ".jpg")
    ]
    return entries, {}
