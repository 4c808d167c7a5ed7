"""Scoring a Segmentor on evaluation caches (docs/design/method.md §8, docs/guides/datasets.md evaluation protocol).

One implementation for `diffseg eval` and the trainer's periodic evaluation:
unconditional branch only; logits upsampled (bilinear) to each label's original
resolution (`orig_labels`; a training cache falls back to its `labels`); argmax; one
dataset-wide ConfusionMatrix per target; per-class IoU, mIoU over classes with a
non-empty union, mIoU16/13 for Synthia-trained runs; several targets: their mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from diffseg.cache import FeatureDataset
from diffseg.core import location
from diffseg.core.classes import CLASS_NAMES
from diffseg.core.errors import DiffsegError
from diffseg.core.stats import mean_over_targets
from diffseg.nn.metrics import ConfusionMatrix, markdown_table, scores
from diffseg.nn.segmentor import Segmentor
from diffseg.stages.device import autocast
from diffseg.stages.runs.usage import Usage


@dataclass(frozen=True, kw_only=True)
class Target:
    """One evaluation cache as the run reads it."""

    path: str
    name: str  # column name in the table (the cache folder name)
    dataset: str  # the cache record's dataset.name
    layers: tuple[str, ...]
    step_indices: tuple[int, ...]  # on this cache's S axis, in the run's step order
    usage: Usage | None = None  # the samples scored (usage.py); None: every complete one


class _WithOrigLabel(Dataset):
    """FeatureDataset items (uncond only) plus the label at its original resolution."""

    def __init__(self, target: Target):
        indices = target.usage.indices if target.usage is not None else None
        self.base = FeatureDataset(target.path, ("uncond",), target.layers, target.step_indices, indices=indices)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, pos: int) -> dict:
        item = self.base[pos]
        reader = self.base.reader
        orig = torch.from_numpy(reader.orig_label(item["index"])) if reader.is_eval else item["label"]
        return {"index": item["index"], "feats": item["feats"]["uncond"], "orig": orig}


def _collate(items: list[dict]) -> dict:
    assert len(items) == 1, "evaluation reads one sample at a time (original sizes vary)"
    item = items[0]
    return {"index": item["index"], "orig": item["orig"], "feats": {k: v[None] for k, v in item["feats"].items()}}


@torch.no_grad()
def confusion_on(
    model: Segmentor,
    target: Target,
    device: torch.device,
    *,
    workers: int = 0,
    autocast_dtype: torch.dtype | None = None,
    rank: int = 0,
    world: int = 1,
) -> tuple[ConfusionMatrix, int]:
    """(dataset-wide confusion matrix, samples scored) of `model` on one target.

    With world > 1 (DDP, every rank calling), rank r scores samples r, r + world, ... and the
    matrices are summed over the process group: each rank returns the whole dataset's matrix,
    equal to one process scoring all samples (integer counts, so the sum is exact)."""
    data = _WithOrigLabel(target)
    if len(data) == 0:
        raise DiffsegError(f"{target.path} has no complete sample to evaluate")
    share = Subset(data, range(rank, len(data), world))
    loader = DataLoader(share, batch_size=1, num_workers=workers, collate_fn=_collate, pin_memory=device.type == "cuda")
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(model.num_classes)
    amp = autocast(device, autocast_dtype)
    bad = -1  # index of a sample with non-finite logits (every rank raises, none waits alone)
    try:
        for batch in loader:
            feats = {k: v.to(device, non_blocking=True).float() for k, v in batch["feats"].items()}
            with amp:
                logits_1Khw = model(feats)
            if not bool(torch.isfinite(logits_1Khw).all()):
                bad = int(batch["index"])
                break
            orig_HW = batch["orig"]
            cm.update(_classes(logits_1Khw, orig_HW), orig_HW)
    finally:
        model.train(was_training)
    if world > 1:
        cm.mat, bad = _sum_over_ranks(cm.mat, bad, device)
    if bad >= 0:
        sid = data.base.reader.ids[bad]
        raise DiffsegError(f"{target.path}: non-finite logits on sample {sid} (NaN/inf in its features?)")
    return cm, len(data)


def _classes(logits_1Khw: torch.Tensor, orig_HW: torch.Tensor) -> torch.Tensor:
    """Class ids at the label's size: the logits upsampled bilinearly, then argmax."""
    up_1KHW = F.interpolate(logits_1Khw.float(), size=tuple(orig_HW.shape), mode="bilinear", align_corners=False)
    return up_1KHW.argmax(1)[0]


@torch.no_grad()
def examples(
    model: Segmentor, target: Target, device: torch.device, n: int, *, autocast_dtype: torch.dtype | None = None
) -> list[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]]:
    """(features by layer, prediction, label) of a target's first n samples, predicted as confusion_on does."""
    data = _WithOrigLabel(target)
    was_training = model.training
    model.eval()
    out = []
    try:
        for pos in range(min(n, len(data))):
            batch = _collate([data[pos]])
            feats = {k: v.to(device).float() for k, v in batch["feats"].items()}
            with autocast(device, autocast_dtype):
                logits_1Khw = model(feats)
            pred_HW = _classes(logits_1Khw, batch["orig"]).to(torch.uint8).cpu().numpy()
            out.append(({k: v[0].cpu().numpy() for k, v in feats.items()}, pred_HW, batch["orig"].numpy()))
    finally:
        model.train(was_training)
    return out


def _sum_over_ranks(mat_KK: torch.Tensor, bad: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """(the matrices summed over the process group, the largest bad index); on `device`, as nccl
    reduces only CUDA tensors."""
    import torch.distributed as dist

    mat_KK = mat_KK.to(device)
    flag = torch.tensor([bad], dtype=torch.int64, device=device)
    dist.all_reduce(mat_KK, op=dist.ReduceOp.SUM)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return mat_KK.cpu(), int(flag.item())


@dataclass(frozen=True, kw_only=True)
class Scored:
    """One target's dataset-wide confusion matrix and the report fields besides its scores."""

    matrix: np.ndarray  # int64 [K, K], ground-truth rows, prediction columns
    row: dict  # "target" (the table's column name), "samples", "dataset", "cache", ...


def score_each(
    model: Segmentor,
    targets: list[Target],
    device: torch.device,
    *,
    workers: int = 0,
    autocast_dtype: torch.dtype | None = None,
    rank: int = 0,
    world: int = 1,
) -> list[Scored]:
    """confusion_on every target, with the fields its report row carries."""
    out = []
    for t in targets:
        cm, n = confusion_on(model, t, device, workers=workers, autocast_dtype=autocast_dtype, rank=rank, world=world)
        used = t.usage.record() if t.usage is not None else {}
        out.append(
            Scored(
                matrix=cm.numpy(), row={"samples": n, "dataset": t.dataset, "target": t.name, "cache": t.path} | used
            )
        )
    return out


def summarize(scored: list[Scored], *, synthia: bool, class_names: Sequence[str] = CLASS_NAMES) -> tuple[dict, str]:
    """-> (JSON report per docs/design/architecture.md: one target its row, several {"targets": [...], "mean_miou"};
    Markdown per-class IoU table)."""
    per_target = [{**scores(s.matrix, synthia=synthia, class_names=class_names), **s.row} for s in scored]
    table = markdown_table({s.row["target"]: s.matrix for s in scored}, class_names=class_names, subsets=synthia)
    if len(per_target) == 1:
        return per_target[0], table
    report = {"targets": per_target, "mean_miou": mean_over_targets([r["miou"] for r in per_target], missing="skip")}
    if synthia:
        report.update(
            {f"mean_{k}": mean_over_targets([r[k] for r in per_target], missing="skip") for k in ("miou16", "miou13")}
        )
    return report, table


def score_targets(
    model: Segmentor,
    targets: list[Target],
    device: torch.device,
    *,
    synthia: bool,
    class_names: Sequence[str] = CLASS_NAMES,
    workers: int = 0,
    autocast_dtype: torch.dtype | None = None,
    rank: int = 0,
    world: int = 1,
) -> tuple[dict, str]:
    """summarize(score_each(...)); under DDP every rank calls it with its rank and the world size, scores its
    share and gets the whole report (confusion_on)."""
    scored = score_each(model, targets, device, workers=workers, autocast_dtype=autocast_dtype, rank=rank, world=world)
    return summarize(scored, synthia=synthia, class_names=class_names)


def target_names(paths: list[str]) -> list[str]:
    """Folder names, made unique with a suffix when two caches share one."""
    names: list[str] = []
    for p in paths:
        base = location.name(p)
        name, k = base, 2
        while name in names:
            name, k = f"{base}#{k}", k + 1
        names.append(name)
    return names
