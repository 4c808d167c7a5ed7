"""`train --log tensorboard`: the curves for TensorBoard too (metrics.jsonl stays the record).

Under <run>/tensorboard/, with the iteration as step: `train/<key>` for each value of a
metrics.jsonl line (loss terms, lr, lr_head, samples_per_s, data_wait_s, data_wait_share,
wall_s); per evaluation `eval/<target>/miou`, `eval/<target>/iou/<class>` (classes with a
defined IoU), `eval/mean_miou` with several targets, and the image `eval/predictions`: per
target its first GRID_SAMPLES samples as features (3 principal components as colours) over
prediction over ground truth (viz.prediction_grid). tensorboard is an optional extra,
imported only when asked for. A resumed run drops the events logged after its checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from diffseg.core.errors import DiffsegError
from diffseg.nn.segmentor import Segmentor
from diffseg.stages.runs.scoring import Target, examples
from diffseg.stages.viz import pca_rgb, prediction_grid, upscale

TB_DIR = "tensorboard"
GRID_SAMPLES = 2


def _summary_writer() -> type:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise DiffsegError(
            f"--log tensorboard needs the tensorboard package ({err}): pip install 'diffseg[tensorboard]'"
        ) from err
    return SummaryWriter


def check_log(kind: str | None) -> None:
    """DiffsegError now, before the run folder is written, when `--log` asks for a package not installed."""
    if kind == "tensorboard":
        _summary_writer()


class TensorBoard:
    """The event file writer of one run (rank 0)."""

    def __init__(self, run: Path, start: int):
        self.writer = _summary_writer()(str(Path(run) / TB_DIR), purge_step=start or None)

    def metrics(self, rec: dict) -> None:
        """One metrics.jsonl line."""
        for key, value in rec.items():
            if key != "iter":
                self.writer.add_scalar(f"train/{key}", value, rec["iter"])

    def evaluation(self, iteration: int, report: dict, picture: np.ndarray | None) -> None:
        """One scoring report (one target its row, several {"targets": [...], "mean_miou"}) and its picture."""
        for row in report.get("targets", [report]):
            name = row["target"]
            if row["miou"] is not None:
                self.writer.add_scalar(f"eval/{name}/miou", row["miou"], iteration)
            for cls, iou in row["per_class_iou"].items():
                if iou is not None:
                    self.writer.add_scalar(f"eval/{name}/iou/{cls}", iou, iteration)
        if report.get("mean_miou") is not None:
            self.writer.add_scalar("eval/mean_miou", report["mean_miou"], iteration)
        if picture is not None:
            self.writer.add_image("eval/predictions", picture, iteration, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_curves(kind: str | None, run: Path, start: int) -> TensorBoard | None:
    """The curve writer `--log` asks for, None when not given."""
    return TensorBoard(run, start) if kind == "tensorboard" else None


def prediction_picture(
    model: Segmentor, targets: list[Target], device: torch.device, amp: torch.dtype | None
) -> np.ndarray:
    """[H, W, 3] uint8: per target, its first samples (features in PCA colours, prediction, ground truth)."""
    rows = {}
    for t in targets:
        samples = []
        for feats, pred_HW, gt_HW in examples(model, t, device, GRID_SAMPLES, autocast_dtype=amp):
            finest = max(feats.values(), key=lambda x: x.shape[-1] * x.shape[-2])  # [S, C, h, w]
            rgb_hw3 = pca_rgb(finest.reshape(-1, *finest.shape[-3:]))[0]
            image = (255 * upscale(rgb_hw3, gt_HW.shape)).astype(np.uint8)
            samples.append((image, pred_HW, gt_HW.astype(np.uint8)))
        rows[t.name] = samples
    return np.asarray(prediction_grid(rows))
