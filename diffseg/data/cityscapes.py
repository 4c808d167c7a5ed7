"""Cityscapes: `leftImg8bit/{split}/{city}/*_leftImg8bit.png` + `gtFine/{split}/{city}/*_gtFine_labelIds.png`.

Train ids are derived from `labelIds` (shipped); a user-made `labelTrainIds` file is read
only when `labelIds` is absent.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from diffseg.data.base import Entry, list_files, rel_id, require_dir
from diffseg.data.options import DatasetOptions
from diffseg.data.readers import read_id_label, read_train_id_label
from diffseg.data.splits import check_split
from diffseg.data.tables import CITYSCAPES_TABLE

_IMG = "_leftImg8bit.png"


def list_entries(root: Path, split: str, opts: DatasetOptions) -> tuple[list[Entry], dict]:
    check_split("cityscapes", split)
    images = require_dir(
        root / "leftImg8bit" / split, "cityscapes", split, f"leftImg8bit/{split}/<city>/*{_IMG} and gtFine/{split}/..."
    )
    ids_reader = partial(read_id_label, table=CITYSCAPES_TABLE)
    entries = []
    for p in list_files(images, _IMG, recursive=True):
        sample_id = rel_id(p, images, _IMG)
        base = root / "gtFine" / split / f"{sample_id}_gtFine"
        labels = ((Path(f"{base}_labelIds.png"), ids_reader), (Path(f"{base}_labelTrainIds.png"), read_train_id_label))
        entries.append(Entry(id=sample_id, image=p, labels=labels))
    return entries, {}
