"""ACDC (fog, night, rain, snow): `rgb_anon/{cond}/{split}/{seq}/<stem>_rgb_anon.png` with
`gt/{cond}/{split}/{seq}/<stem>_gt_labelTrainIds.png` (or `_gt_labelIds.png`).

DAFormer-prepared copies are flattened (`rgb_anon/{split}/`, `gt/{split}/`); they keep no
conditions, so `conditions` needs the per-condition layout. `*_ref` folders are unlabelled.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from diffseg.core.errors import DiffsegError
from diffseg.data.base import Entry, list_files, rel_id
from diffseg.data.options import DatasetOptions
from diffseg.data.readers import read_id_label, read_train_id_label
from diffseg.data.splits import check_split
from diffseg.data.tables import CITYSCAPES_TABLE

CONDITIONS = ("fog", "night", "rain", "snow")
_IMG = "_rgb_anon.png"


def paired_entries(images: Path, gt: Path, prefix: str = "") -> list[Entry]:
    """`<images>/**/<stem>_rgb_anon.png` paired with `<gt>/**/<stem>_gt_label{TrainIds,Ids}.png`."""
    ids_reader = partial(read_id_label, table=CITYSCAPES_TABLE)
    entries = []
    for p in list_files(images, _IMG, recursive=True):
        rel = rel_id(p, images, _IMG)
        labels = (
            (gt / f"{rel}_gt_labelTrainIds.png", read_train_id_label),
            (gt / f"{rel}_gt_labelIds.png", ids_reader),
        )
        entries.append(Entry(id=prefix + rel, image=p, labels=labels))
    return entries


def list_entries(root: Path, split: str, opts: DatasetOptions) -> tuple[list[Entry], dict]:
    check_split("acdc", split)
    flat = root / "rgb_anon" / split
    if flat.is_dir():
        if opts.conditions:
            raise DiffsegError(
                f"acdc: {flat} is the flattened (DAFormer) layout, which keeps no conditions; "
                f"--conditions needs rgb_anon/<condition>/{split}/"
            )
        return paired_entries(flat, root / "gt" / split), {"layout": "flat"}

    unknown = sorted(set(opts.conditions or ()) - set(CONDITIONS))
    if unknown:
        raise DiffsegError(f"acdc: unknown condition(s) {', '.join(unknown)}: use {', '.join(CONDITIONS)}")
    available = [c for c in CONDITIONS if (root / "rgb_anon" / c / split).is_dir()]
    if not available:
        raise DiffsegError(
            f"acdc {split}: no split folder: neither {flat} nor rgb_anon/<{'|'.join(CONDITIONS)}>/{split} under {root}"
        )
    chosen = tuple(c for c in CONDITIONS if c in opts.conditions) if opts.conditions else tuple(available)
    missing = [c for c in chosen if c not in available]
    if missing:
        raise DiffsegError(f"acdc {split}: condition folder {root / 'rgb_anon' / missing[0] / split} not found")
    entries = []
    for cond in chosen:
        images, gt = root / "rgb_anon" / cond / split, root / "gt" / cond / split
        entries += paired_entries(images, gt, prefix=f"{cond}/")
    return entries, {"conditions": list(chosen)}
