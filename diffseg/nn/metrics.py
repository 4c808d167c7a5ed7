"""Segmentation metrics (docs/guides/datasets.md, evaluation protocol).

One confusion matrix per dataset (rows: ground truth, columns: prediction), pixels with
ground truth 255 dropped; IoU_c = TP_c / (TP_c + FP_c + FN_c); mIoU = mean over classes
with a non-empty union (NaN IoU elsewhere). Synthia-trained runs add mIoU16 / mIoU13.
Accuracies as mmseg reports them: aAcc = correct pixels / labelled pixels; Acc_c = TP_c / (pixels
of class c), mAcc = mean over the classes present in the ground truth.
IoU values are fractions; `markdown_table` shows percentages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from diffseg.core.classes import CLASS_NAMES, IGNORE, NUM_CLASSES, SYNTHIA13, SYNTHIA16
from diffseg.core.errors import DiffsegError
from diffseg.core.stats import pct

SUBSETS: dict[str, tuple[int, ...]] = {"miou16": SYNTHIA16, "miou13": SYNTHIA13}


class ConfusionMatrix:
    """Dataset-wide confusion counts `mat` [K, K] int64 (gt row, prediction column)."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        self.num_classes = num_classes
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred, label) -> None:
        """pred, label: same-shape int arrays/tensors of train ids; label 255 pixels are dropped."""
        pred_N = torch.as_tensor(np.asarray(pred) if not torch.is_tensor(pred) else pred).reshape(-1)
        label_N = torch.as_tensor(np.asarray(label) if not torch.is_tensor(label) else label).reshape(-1)
        if pred_N.shape != label_N.shape:
            raise DiffsegError(f"prediction has {pred_N.numel()} pixels, label {label_N.numel()}")
        pred_N, label_N = pred_N.cpu().long(), label_N.cpu().long()
        keep = label_N != IGNORE
        pred_N, label_N = pred_N[keep], label_N[keep]
        K = self.num_classes
        if label_N.numel() and (label_N.min() < 0 or label_N.max() >= K):
            raise DiffsegError(
                f"label holds values outside 0..{K - 1} and {IGNORE}: "
                f"{sorted(set(label_N.unique().tolist()) - set(range(K)))}"
            )
        assert pred_N.numel() == 0 or (pred_N.min() >= 0 and pred_N.max() < K), "prediction out of range"
        self.mat += torch.bincount(label_N * K + pred_N, minlength=K * K).reshape(K, K)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        assert other.num_classes == self.num_classes
        self.mat += other.mat
        return self

    def numpy(self) -> np.ndarray:
        return self.mat.numpy().copy()


def _as_array(conf) -> np.ndarray:
    if isinstance(conf, ConfusionMatrix):
        return conf.numpy()
    return conf.cpu().numpy() if torch.is_tensor(conf) else np.asarray(conf)


def iou_per_class(conf) -> np.ndarray:
    """[K] float64 IoU per class; NaN where the union (gt + pred - tp) is 0."""
    mat = _as_array(conf).astype(np.float64)
    tp = np.diag(mat)
    union = mat.sum(0) + mat.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def miou(conf, subset: Sequence[int] | None = None) -> float:
    """Mean IoU over the classes (of `subset`, if given) with a non-empty union; NaN if none."""
    iou = iou_per_class(conf)
    if subset is not None:
        iou = iou[list(subset)]
    iou = iou[~np.isnan(iou)]
    return float(iou.mean()) if iou.size else math.nan


miou_from_confusion = miou  # name used in contracts.md


def acc_per_class(conf) -> np.ndarray:
    """[K] float64 recall per class, TP / ground-truth pixels; NaN where the class has none."""
    mat = _as_array(conf).astype(np.float64)
    gt = mat.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(gt > 0, np.diag(mat) / gt, np.nan)


def overall_acc(conf) -> float:
    """aAcc: correctly predicted labelled pixels / labelled pixels; NaN when no pixel is labelled."""
    mat = _as_array(conf).astype(np.float64)
    total = mat.sum()
    return float(np.trace(mat) / total) if total > 0 else math.nan


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def scores(conf, synthia: bool = False, class_names: Sequence[str] = CLASS_NAMES) -> dict:
    """JSON-ready: {"miou", "aAcc", "mAcc", "per_class_iou": {name: IoU | None}, "per_class_acc": {name: Acc |
    None}} (+ "miou16", "miou13" if synthia)."""
    iou, acc = iou_per_class(conf), acc_per_class(conf)
    out = {
        "miou": _none_if_nan(miou(conf)),
        "aAcc": _none_if_nan(overall_acc(conf)),
        "mAcc": _none_if_nan(_nanmean(acc)),
        "per_class_iou": {name: _none_if_nan(v) for name, v in zip(class_names, iou)},
        "per_class_acc": {name: _none_if_nan(v) for name, v in zip(class_names, acc)},
    }
    if synthia:
        out.update({key: _none_if_nan(miou(conf, subset)) for key, subset in SUBSETS.items()})
    return out


def _none_if_nan(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def markdown_table(
    results: Mapping[str, np.ndarray], class_names: Sequence[str] = CLASS_NAMES, subsets: bool = False
) -> str:
    """Per-class IoU table: classes as rows, one column per target (IoU arrays or confusion
    matrices) plus their mean; then an mIoU row (and mIoU16/13 rows when `subsets`). Values in %,
    "-" where undefined. The mean column averages the targets that define the value."""
    ious = {t: iou_per_class(r) if _is_confusion(r) else np.asarray(r, dtype=np.float64) for t, r in results.items()}
    targets = list(ious)
    header = "| class | " + " | ".join(targets) + " | mean |"
    lines = [header, "|---|" + "---:|" * (len(targets) + 1)]

    def row(name: str, values: list[float]) -> str:
        defined = [v for v in values if not math.isnan(v)]
        mean = sum(defined) / len(defined) if defined else math.nan
        return f"| {name} | " + " | ".join(_pct(v) for v in [*values, mean]) + " |"

    for c, name in enumerate(class_names):
        lines.append(row(name, [float(ious[t][c]) for t in targets]))
    summary = {"mIoU": None, **({"mIoU16": SYNTHIA16, "mIoU13": SYNTHIA13} if subsets else {})}
    for name, subset in summary.items():
        lines.append(row(f"**{name}**", [_mean_defined(ious[t], subset) for t in targets]))
    return "\n".join(lines) + "\n"


def _is_confusion(r) -> bool:
    return isinstance(r, ConfusionMatrix) or np.ndim(r) == 2


def _mean_defined(iou: np.ndarray, subset: Sequence[int] | None) -> float:
    values = iou if subset is None else iou[list(subset)]
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def _pct(v: float) -> str:
    return pct(v, missing="-")
