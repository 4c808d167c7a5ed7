"""Datasets in the 19-class Cityscapes label space: adapters, label tables, the demo set.

ds = open_dataset("gtav")            # root: $DIFFSEG_DATA/gta or data/gta
s = ds.load(0)                       # Sample(id, image uint8 [H, W, 3], label uint8 [H, W])
"""

from __future__ import annotations

from pathlib import Path

from diffseg.core.classes import CLASS_NAMES, IGNORE, NUM_CLASSES, PALETTE, SYNTHIA13, SYNTHIA16
from diffseg.core.errors import DiffsegError
from diffseg.data import acdc, bdd100k, cityscapes, darkzurich, gtav, mapillary, synthia
from diffseg.data.base import FileDataset, Sample
from diffseg.data.demo.dataset import DEMO_SPLITS, DemoDataset
from diffseg.data.options import DatasetOptions
from diffseg.data.roots import default_root, resolve_root
from diffseg.data.splits import restrict

_ADAPTERS = {
    "gtav": gtav.list_entries,
    "synthia": synthia.list_entries,
    "cityscapes": cityscapes.list_entries,
    "bdd100k": bdd100k.list_entries,
    "mapillary": mapillary.list_entries,
    "acdc": acdc.list_entries,
    "darkzurich": darkzurich.list_entries,
}
DATASET_NAMES: tuple[str, ...] = (*_ADAPTERS, "demo")

Dataset = FileDataset | DemoDataset


def open_dataset(
    name: str,
    root: Path | str | None = None,
    split: str = "train",
    split_file: Path | str | None = None,
    mapillary_map: str = "A",
    conditions: tuple[str, ...] | list[str] | None = None,
    demo_size: tuple[int, int] = (128, 128),
    demo_count: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Open split `split` of dataset `name`; listing walks folders only (no decoding).

    `demo_size` is (W, H). Raises DiffsegError for an unknown name or split, a missing
    root or split folder, an unknown id in `split_file`, or an option the dataset lacks.
    """
    if name not in DATASET_NAMES:
        raise DiffsegError(f"unknown dataset {name!r}: use one of {', '.join(DATASET_NAMES)}")
    if conditions is not None and name != "acdc":
        raise DiffsegError(f"--conditions applies to acdc only, not {name}")
    if name == "demo":
        return DemoDataset(split=split, size=demo_size, count=demo_count, seed=seed, split_file=split_file)
    split_file = None if split_file is None else Path(split_file)
    opts = DatasetOptions(
        split_file=split_file, mapillary_map=mapillary_map, conditions=None if conditions is None else tuple(conditions)
    )
    path = resolve_root(name, root)
    entries, info = _ADAPTERS[name](path, split, opts)
    entries = restrict(entries, lambda e: e.id, split_file, name, split)
    if split_file is not None:
        info["split_file"] = str(split_file)
    return FileDataset(name=name, split=split, root=path, entries=entries, info=info)


__all__ = [
    "CLASS_NAMES",
    "DATASET_NAMES",
    "DEMO_SPLITS",
    "IGNORE",
    "NUM_CLASSES",
    "PALETTE",
    "SYNTHIA13",
    "SYNTHIA16",
    "Dataset",
    "DemoDataset",
    "FileDataset",
    "Sample",
    "default_root",
    "open_dataset",
]
