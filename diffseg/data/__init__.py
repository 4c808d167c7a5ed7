"""Datasets: adapters (the built-in ones in the 19-class Cityscapes label space; `folder` and
plugins of the `diffseg.datasets` entry point group in their own), label tables, the demo set.

ds = open_dataset("gtav")            # root: $DIFFSEG_DATA/gta or data/gta
s = ds.load(0)                       # Sample(id, image uint8 [H, W, 3], label uint8 [H, W])
"""

from __future__ import annotations

from pathlib import Path

from diffseg.core.classes import CITYSCAPES, CLASS_NAMES, IGNORE, NUM_CLASSES, PALETTE, SYNTHIA13, SYNTHIA16, ClassTable
from diffseg.core.errors import DiffsegError
from diffseg.data import acdc, bdd100k, cityscapes, darkzurich, folder, gtav, mapillary, synthia
from diffseg.data.base import FileDataset, Sample
from diffseg.data.demo.dataset import DEMO_SPLITS, DemoDataset
from diffseg.data.options import DatasetOptions
from diffseg.data.plugins import Adapter, plugin_adapters
from diffseg.data.roots import default_root, resolve_root
from diffseg.data.splits import restrict

_ADAPTERS: dict[str, Adapter] = {
    "gtav": gtav,
    "synthia": synthia,
    "cityscapes": cityscapes,
    "bdd100k": bdd100k,
    "mapillary": mapillary,
    "acdc": acdc,
    "darkzurich": darkzurich,
    "folder": folder,
}
DATASET_NAMES: tuple[str, ...] = (*_ADAPTERS, "demo")  # the built-in ones; entry points add more

Dataset = FileDataset | DemoDataset


def dataset_classes(name: str, root: Path | str | None = None) -> ClassTable:
    """The label space of dataset `name` (Cityscapes' 19 for the built-in ones, without looking at
    disk; a folder dataset's or a plugin's own from its root)."""
    if name == "demo" or (name in _ADAPTERS and name != "folder"):
        return CITYSCAPES
    adapter = _adapter(name)
    return adapter.class_table(resolve_root(name, root)) if hasattr(adapter, "class_table") else CITYSCAPES


def _adapter(name: str) -> Adapter:
    adapters = {**plugin_adapters(), **_ADAPTERS}  # a plugin cannot shadow a built-in name
    if name not in adapters:
        known = (*DATASET_NAMES, *sorted(set(adapters) - set(DATASET_NAMES)))
        raise DiffsegError(f"unknown dataset {name!r}: use one of {', '.join(known)}")
    return adapters[name]


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
    adapter = None if name == "demo" else _adapter(name)
    if conditions is not None and name != "acdc":
        raise DiffsegError(f"--conditions applies to acdc only, not {name}")
    if name == "demo":
        return DemoDataset(split=split, size=demo_size, count=demo_count, seed=seed, split_file=split_file)
    split_file = None if split_file is None else Path(split_file)
    opts = DatasetOptions(
        split_file=split_file, mapillary_map=mapillary_map, conditions=None if conditions is None else tuple(conditions)
    )
    assert adapter is not None
    path = resolve_root(name, root)
    entries, info = adapter.list_entries(path, split, opts)
    entries = restrict(entries, lambda e: e.id, split_file, name, split)
    if split_file is not None:
        info["split_file"] = str(split_file)
    table = adapter.class_table(path) if hasattr(adapter, "class_table") else CITYSCAPES
    return FileDataset(name=name, split=split, root=path, entries=entries, info=info, classes=table)


__all__ = [
    "CLASS_NAMES",
    "DATASET_NAMES",
    "DEMO_SPLITS",
    "IGNORE",
    "NUM_CLASSES",
    "PALETTE",
    "SYNTHIA13",
    "SYNTHIA16",
    "ClassTable",
    "Dataset",
    "DemoDataset",
    "FileDataset",
    "Sample",
    "dataset_classes",
    "default_root",
    "open_dataset",
]
