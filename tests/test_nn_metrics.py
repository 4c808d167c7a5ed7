"""Confusion matrix, IoU, mIoU and the Markdown table against hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from diffseg.core.errors import DiffsegError
from diffseg.nn.metrics import ConfusionMatrix, iou_per_class, markdown_table, miou, miou_from_confusion, scores

# 3 classes; class 2 is absent from the ground truth and (after dropping the 255 pixel) the prediction.
LABEL = np.array([[0, 0, 1], [0, 1, 1], [255, 0, 1]], np.uint8)
PRED = np.array([[0, 1, 1], [0, 1, 0], [2, 0, 0]], np.int64)


def test_miou_3x3_with_ignore_and_absent_class():
    cm = ConfusionMatrix(num_classes=3)
    cm.update(PRED, LABEL)
    # gt 0: 3 predicted 0, 1 predicted 1; gt 1: 2 predicted 0, 2 predicted 1
    assert cm.numpy().tolist() == [[3, 1, 0], [2, 2, 0], [0, 0, 0]]
    iou = iou_per_class(cm)
    assert iou[0] == pytest.approx(3 / 6) and iou[1] == pytest.approx(2 / 5) and math.isnan(iou[2])
    assert miou(cm) == pytest.approx(0.45)  # class 2 is left out of the mean
    assert miou_from_confusion(cm.mat) == pytest.approx(0.45)
    assert miou(cm, subset=[1, 2]) == pytest.approx(0.4)
    assert math.isnan(miou(cm, subset=[2]))


def test_accumulating_two_batches_equals_one_batch():
    g = torch.Generator().manual_seed(0)
    label = torch.randint(0, 19, (2, 16, 16), generator=g)
    label[label == 5] = 255
    pred = torch.randint(0, 19, (2, 16, 16), generator=g)
    whole, parts = ConfusionMatrix(), ConfusionMatrix()
    whole.update(pred, label)
    parts.update(pred[:1], label[:1])
    parts.update(pred[1:], label[1:])
    assert torch.equal(whole.mat, parts.mat)
    assert whole.mat.sum() == (label != 255).sum()
    assert torch.equal(ConfusionMatrix().merge(whole).mat, whole.mat)


def test_update_rejects_bad_labels_and_shapes():
    cm = ConfusionMatrix(num_classes=3)
    with pytest.raises(DiffsegError, match=r"outside 0\.\.2"):
        cm.update(np.zeros((2, 2), np.int64), np.array([[0, 7], [1, 255]]))
    with pytest.raises(DiffsegError, match="pixels"):
        cm.update(np.zeros((2, 2), np.int64), np.zeros((3, 3), np.int64))


def test_scores_with_synthia_subsets():
    conf = np.eye(19, dtype=np.int64) * 10
    conf[9, 9], conf[9, 0] = 0, 10  # terrain always predicted as road
    out = scores(conf, synthia=True)
    assert out["per_class_iou"]["road"] == pytest.approx(0.5)
    assert out["per_class_iou"]["terrain"] == 0.0
    assert out["miou"] == pytest.approx(17.5 / 19)
    assert out["miou16"] == pytest.approx(15.5 / 16)  # terrain, truck, train not in Synthia-16
    assert out["miou13"] == pytest.approx(12.5 / 13)
    empty = scores(np.zeros((19, 19)))
    assert empty["miou"] is None and empty["per_class_iou"]["sky"] is None and "miou16" not in empty


def test_accuracies_against_hand_computed_values():
    # 3 classes; rows ground truth, columns prediction; class 2 never in the ground truth
    conf = np.array([[6, 2, 0], [1, 3, 0], [0, 5, 0]], dtype=np.int64)
    conf[2] = 0
    out = scores(conf, class_names=("a", "b", "c"))
    assert out["aAcc"] == pytest.approx((6 + 3) / 12)
    assert out["per_class_acc"] == {"a": pytest.approx(6 / 8), "b": pytest.approx(3 / 4), "c": None}
    assert out["mAcc"] == pytest.approx((6 / 8 + 3 / 4) / 2)  # over the classes in the ground truth
    conf[0, 2] = 4  # predicting the absent class: a wrong pixel, counted in aAcc and class a's accuracy
    out = scores(conf, class_names=("a", "b", "c"))
    assert out["aAcc"] == pytest.approx(9 / 16) and out["per_class_acc"]["a"] == pytest.approx(6 / 12)
    empty = scores(np.zeros((19, 19)))
    assert empty["aAcc"] is None and empty["mAcc"] is None


def test_markdown_table_literal():
    table = markdown_table(
        {"A": np.array([0.5, 0.4, np.nan]), "B": np.array([1.0, np.nan, np.nan])}, class_names=("c0", "c1", "c2")
    )
    assert table.splitlines() == [
        "| class | A | B | mean |",
        "|---|---:|---:|---:|",
        "| c0 | 50.00 | 100.00 | 75.00 |",
        "| c1 | 40.00 | - | 40.00 |",
        "| c2 | - | - | - |",
        "| **mIoU** | 45.00 | 100.00 | 72.50 |",
    ]


def test_markdown_table_from_confusion_with_subsets():
    conf = np.eye(19, dtype=np.int64)
    conf[9, 9], conf[9, 0] = 0, 1
    lines = markdown_table({"cs": conf}, subsets=True).splitlines()
    assert lines[2] == "| road | 50.00 | 50.00 |"
    assert lines[-2:] == ["| **mIoU16** | 96.88 | 96.88 |", "| **mIoU13** | 96.15 | 96.15 |"]
