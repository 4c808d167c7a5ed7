"""A dataset of your own: `images/<split>/*.{png,jpg,jpeg}` + `labels/<split>/<same stem>.png` + `classes.json`.

mmsegmentation's custom layout. Labels are 8-bit grey or palette PNGs whose pixel value is a class id
of `classes.json` (docs/guides/custom-dataset.md): a list of `{"id", "name", "color": [r, g, b]}`
objects (an optional `"prompt"`: the words a masked prompt names the class by), or an object
`{"classes": [...], "ignore": N}` when unlabelled pixels are not 255. Ids run 0..K-1 (2 <= K <= 255).
Any split name works: it is a folder name. Sub-folders are walked; a sample's id is its path below
`images/<split>/` without the extension.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import partial
from pathlib import Path

from diffseg.core.classes import ClassTable
from diffseg.core.errors import DiffsegError
from diffseg.data.base import Entry, list_files, rel_id, require_dir
from diffseg.data.options import DatasetOptions
from diffseg.data.readers import read_table_label

CLASSES_FILE = "classes.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def class_table(root: Path) -> ClassTable:
    """The label space of the folder dataset at `root`, from its classes.json."""
    path = root / CLASSES_FILE
    if not path.is_file():
        raise DiffsegError(f"folder dataset: {path} not found (the class table: see docs/guides/custom-dataset.md)")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DiffsegError(f"{path}: not readable JSON ({err})") from None
    return ClassTable.from_json(value, str(path))


def list_entries(root: Path, split: str, opts: DatasetOptions) -> tuple[list[Entry], dict]:
    images = require_dir(root / "images" / split, "folder", split, f"images/{split}/*.png|jpg and labels/{split}/*.png")
    reader = partial(read_table_label, table=class_table(root))
    labels = root / "labels" / split
    entries = []
    for suffix in IMAGE_SUFFIXES:
        for p in list_files(images, suffix, recursive=True):
            sample_id = rel_id(p, images, suffix)
            entries.append(Entry(id=sample_id, image=p, labels=((labels / f"{sample_id}.png", reader),)))
    twice = sorted(i for i, n in Counter(e.id for e in entries).items() if n > 1)
    if twice:
        raise DiffsegError(f"folder {split}: images share a stem (one label each): {', '.join(twice[:5])}")
    return entries, {}
