"""Trainable part (docs/design/method.md §6-8): DIFF fusion block, DAFormer head, IPKL losses, metrics."""

from diffseg.nn.config import FusionConfig, fusion_preset
from diffseg.nn.dropout import SeededDropout2d, seeded_dropout2d
from diffseg.nn.fusion import DiffFusion
from diffseg.nn.head import DAFormerHead
from diffseg.nn.losses import LossConfig, consistency_loss, ipkl_loss, segmentation_ce
from diffseg.nn.metrics import ConfusionMatrix, iou_per_class, markdown_table, miou, miou_from_confusion, scores
from diffseg.nn.segmentor import Segmentor

__all__ = [
    "ConfusionMatrix",
    "DAFormerHead",
    "DiffFusion",
    "FusionConfig",
    "LossConfig",
    "SeededDropout2d",
    "Segmentor",
    "consistency_loss",
    "fusion_preset",
    "iou_per_class",
    "ipkl_loss",
    "markdown_table",
    "miou",
    "miou_from_confusion",
    "scores",
    "seeded_dropout2d",
    "segmentation_ce",
]
