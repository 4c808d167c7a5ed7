"""Online evaluation (`diffseg eval --dataset NAME --split S`): the run's frozen model on a dataset's
images at evaluation time, through predict's arithmetic (online.image_logits), scored like cached
evaluation (scoring.py): each prediction at its label's original size, one dataset-wide confusion matrix;
reported and written as cached evaluation's (runs/reports.py).

Each image keeps its aspect ratio, as `predict` does: per scale, its network size is `aspect_size`
of the image within the area of the resolution (default: the dataset's evaluation resolution, the
size `extract` gives its evaluation caches) times that scale, sides multiples of 64.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tqdm import tqdm

from diffseg.core.errors import DiffsegError
from diffseg.nn.metrics import ConfusionMatrix
from diffseg.stages.device import autocast_dtype, resolve_device
from diffseg.stages.predict.inputs import warn
from diffseg.stages.predict.job import aspect_size, build_extractor, load_frozen
from diffseg.stages.predict.online import Protocol, image_logits
from diffseg.stages.runs.record import (
    RunRecord,
    check_label_space,
    extract_config,
    is_synthia,
    load_segmentor,
    read_run,
)
from diffseg.stages.runs.reports import publish
from diffseg.stages.runs.scoring import Scored


def eval_resolution(dataset: str, resolution: tuple[int, int] | None) -> tuple[int, int]:
    """`resolution` checked, else the size `extract` resizes this dataset's evaluation caches to."""
    from diffseg.stages.extract.plan import resolve_sizes

    return resolve_sizes(dataset, "eval", resolution, None)[0]


def target_name(dataset: str, split: str, protocol: Protocol) -> str:
    """The report's column and file name: dataset, split and the protocol, e.g. cityscapes-val-online-slide-flip-x0.75-1-1.25."""
    name = f"{dataset}-{split}-online-{protocol.mode}" + ("-flip" if protocol.flip else "")
    return name + ("" if protocol.scales == (1.0,) else "-x" + "-".join(f"{s:g}" for s in protocol.scales))


def score_online(
    record: RunRecord,
    *,
    dataset: str,
    split: str,
    root: Path | None,
    protocol: Protocol,
    resolution: tuple[int, int] | None = None,
    limit: int | None = None,
    device: str = "auto",
) -> tuple[Scored, str]:
    """(the dataset's confusion matrix and report row, which weights)."""
    from diffseg.data import open_dataset

    res = eval_resolution(dataset, resolution)
    data = open_dataset(dataset, root=root, split=split, demo_size=res)  # the demo's images at the cache's size
    check_label_space(f"{dataset} {split}", data.classes, record.class_table)
    n = len(data) if limit is None else min(limit, len(data))
    if n == 0:
        raise DiffsegError(f"{dataset} split {split} has no image to evaluate")
    extract = extract_config(record)  # checked before any model loads
    dev = resolve_device(device)
    extractor = build_extractor(record, extract, load_frozen(record, None, dev.type))
    segmentor, which = load_segmentor(record, dev)
    if which != "final":
        warn(f"{record.path} has no final weights: using its {which}")
    amp = autocast_dtype(dev)
    budgets = protocol.scaled(res)
    cm = ConfusionMatrix(segmentor.num_classes)
    for i in tqdm(range(n), desc="eval", unit="image", file=sys.stderr, dynamic_ncols=True):
        sample = data.load(i)
        wh = sample.image.shape[1::-1]
        sizes = [aspect_size(wh, b) for b in budgets]
        logits_KHW = image_logits(
            extractor, segmentor, sample.image, sizes, sample.label.shape, sample.id, dev.type, amp, protocol
        )
        cm.update(logits_KHW.argmax(0), torch.from_numpy(sample.label))
    row = {
        "samples": n,
        "dataset": dataset,
        "target": target_name(dataset, split, protocol),
        "split": split,
        "online": {
            "mode": protocol.mode,
            "crop": None if protocol.crop is None else list(protocol.crop),
            "stride": None if protocol.mode == "whole" else list(protocol.stride or protocol.crop),  # type: ignore[arg-type]
            "flip": protocol.flip,
            "scales": list(protocol.scales),
            "resolution": list(res),
        },
    }
    return Scored(matrix=cm.numpy(), row=row), which


def main(
    run: Path,
    *,
    dataset: str,
    split: str,
    root: Path | None = None,
    protocol: Protocol | None = None,
    resolution: tuple[int, int] | None = None,
    limit: int | None = None,
    as_json: bool = False,
    device: str = "auto",
) -> dict:
    record = read_run(run)
    scored, which = score_online(
        record,
        dataset=dataset,
        split=split,
        root=root,
        protocol=protocol or Protocol(),
        resolution=resolution,
        limit=limit,
        device=device,
    )
    names = record.class_table.names
    return publish(run, [scored], which, synthia=is_synthia(record), as_json=as_json, class_names=names)
