"""IPKL losses against hand-computed values (docs/design/method.md §7)."""

import dataclasses
import json
import math

import pytest
import torch

from diffseg.core.errors import DiffsegError
from diffseg.nn.losses import LossConfig, consistency_loss, ipkl_loss, segmentation_ce

# 2 classes, 2x2 pixels; label 255 at the bottom-right pixel.
LOGITS = torch.tensor([[[[0.0, 1.0], [0.0, 5.0]], [[0.0, 0.0], [2.0, -3.0]]]])  # [1, 2, 2, 2]
LABELS = torch.tensor([[[0, 0], [1, 255]]])  # [1, 2, 2]
# -log softmax of the labelled class per pixel: logits (0, 0) label 0 -> log 2; (1, 0) label 0 -> log(1 + e^-1);
# (0, 2) label 1 -> log(1 + e^-2); the 255 pixel is left out of the mean
CE_2X2 = (math.log(2.0) + math.log1p(math.exp(-1.0)) + math.log1p(math.exp(-2.0))) / 3  # = 0.3777790


def test_ce_2x2_with_ignore_pixel():
    assert segmentation_ce(LOGITS, LABELS).item() == pytest.approx(CE_2X2, abs=1e-6)
    # the printed value, so a slip in the formula above cannot hide
    assert segmentation_ce(LOGITS, LABELS).item() == pytest.approx(0.3777790, abs=1e-6)


def test_ce_upsamples_logits_to_label_size():
    logits = torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1)  # a constant map stays constant
    labels = torch.tensor([[[0, 1], [255, 0]]])
    # two pixels log(1 + e^-1) = 0.3132617, one pixel log(1 + e^1) = 1.3132617
    assert segmentation_ce(logits, labels).item() == pytest.approx(1.9397851 / 3, abs=1e-6)


def test_ce_all_ignored_is_zero_with_graph():
    logits = LOGITS.clone().requires_grad_(True)
    loss = segmentation_ce(logits, torch.full((1, 2, 2), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_l2_consistency_and_gradient():
    cond = torch.tensor([1.0, 2.0]).reshape(1, 2, 1, 1).requires_grad_(True)
    uncond = torch.tensor([0.0, 4.0]).reshape(1, 2, 1, 1).requires_grad_(True)
    loss = consistency_loss(cond, uncond, "l2")
    assert loss.item() == pytest.approx(2.5)  # (1 + 4) / 2
    loss.backward()
    assert uncond.grad.flatten().tolist() == pytest.approx([-1.0, 2.0])  # 2 (u - c) / 2
    assert cond.grad.flatten().tolist() == pytest.approx([1.0, -2.0])


def test_kl_consistency_literal():
    # pixel 0: p = (1/2, 1/2), q = (1/4, 3/4): KL = 1/2 ln 2 + 1/2 ln(2/3) = 1/2 ln(4/3); pixel 1: equal
    cond = torch.tensor([[[[0.0, 1.0]], [[0.0, 2.0]]]])  # [1, 2, 1, 2]
    uncond = torch.tensor([[[[0.0, 1.0]], [[math.log(3.0), 2.0]]]])
    assert consistency_loss(cond, uncond, "kl").item() == pytest.approx(0.1438410 / 2, abs=1e-6)
    assert consistency_loss(cond, cond + 7.0, "kl").item() == pytest.approx(0.0, abs=1e-6)


def test_kl_ref_is_the_reference_batchmean_sum_weighted_and_clamped():
    # per pixel p_cond = (1/2, 1/2), p_uncond = (3/4, 1/4): KL = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3) = 0.1438410
    kl_px = 0.5 * math.log(4.0 / 3.0)

    def pair(batch, pixels):
        cond = torch.zeros(batch, 2, 1, pixels)
        uncond = torch.zeros(batch, 2, 1, pixels)
        uncond[:, 0] = math.log(3.0)
        return cond, uncond.requires_grad_()

    # 2 images x 2 pixels: batchmean = sum over 4 pixels / 2 = 0.2876821 < 0.5 -> 0.1 x that, with a gradient
    cond, uncond = pair(2, 2)
    loss = consistency_loss(cond, uncond, "kl-ref")
    assert loss.item() == pytest.approx(0.1 * 2 * kl_px, abs=1e-7)
    loss.backward()
    assert uncond.grad is not None and uncond.grad.abs().sum() > 0
    # 1 image x 4 pixels: 4 x 0.1438410 = 0.5753641 > 0.5 -> clamped: 0.1 x 0.5 = 0.05, and no gradient
    cond, uncond = pair(1, 4)
    loss = consistency_loss(cond, uncond, "kl-ref")
    assert loss.item() == pytest.approx(0.05, abs=1e-7)
    loss.backward()
    assert uncond.grad is not None and torch.count_nonzero(uncond.grad) == 0
    # today's kl on the same pair is the per-pixel mean, unclamped
    assert consistency_loss(cond, uncond, "kl").item() == pytest.approx(kl_px, abs=1e-6)


def test_detach_teacher_stops_gradient_to_cond():
    cond = LOGITS.clone().requires_grad_(True)
    uncond = (LOGITS + 1.0).requires_grad_(True)
    consistency_loss(cond, uncond, "l2", detach_teacher=True).backward()
    assert cond.grad is None and uncond.grad.abs().sum() > 0
    cfg = LossConfig(w_cond=0.0, detach_teacher=True)
    total, _ = ipkl_loss(cond, uncond, LABELS, cfg)
    total.backward()
    assert torch.count_nonzero(cond.grad) == 0  # only the 0-weighted CE reaches it
    cond.grad = None
    ipkl_loss(cond, uncond, LABELS, dataclasses.replace(cfg, detach_teacher=False))[0].backward()
    assert torch.count_nonzero(cond.grad) > 0


def test_loss_weights_combine_terms():
    # CE is shift invariant, so uncond = cond + 1 has the same CE and an l2 term of exactly 1
    cfg = LossConfig(w_cond=2.0, w_uncond=3.0, w_cons=5.0)
    total, terms = ipkl_loss(LOGITS, LOGITS + 1.0, LABELS, cfg)
    assert terms["ce_cond"] == pytest.approx(CE_2X2, abs=1e-6)
    assert terms["ce_uncond"] == pytest.approx(CE_2X2, abs=1e-6)
    assert terms["cons"] == pytest.approx(1.0)
    assert total.item() == pytest.approx(2 * CE_2X2 + 3 * CE_2X2 + 5 * 1.0, abs=1e-5)
    assert terms["total"] == pytest.approx(total.item())


def test_single_branch_and_none_consistency():
    _, uncond_only = ipkl_loss(None, LOGITS, LABELS, LossConfig())
    assert set(uncond_only) == {"ce_uncond", "total"}
    total, cond_only = ipkl_loss(LOGITS, None, LABELS, LossConfig(w_cond=2.0))
    assert set(cond_only) == {"ce_cond", "total"} and total.item() == pytest.approx(2 * CE_2X2, abs=1e-5)
    _, no_cons = ipkl_loss(LOGITS, LOGITS, LABELS, LossConfig(consistency="none"))
    assert "cons" not in no_cons
    with pytest.raises(DiffsegError, match="both are None"):
        ipkl_loss(None, None, LABELS, LossConfig())


def test_nan_loss_names_the_term():
    bad = LOGITS.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(DiffsegError, match="ce_uncond"):
        ipkl_loss(LOGITS, bad, LABELS, LossConfig(consistency="none"))
    with pytest.raises(DiffsegError, match="'cons' is inf"):
        ipkl_loss(LOGITS, LOGITS * 1e30, LABELS, LossConfig(w_uncond=0.0))


def test_loss_config_round_trip_and_validation():
    cfg = LossConfig(w_cons=0.5, consistency="kl", detach_teacher=True)
    assert LossConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(DiffsegError, match="consistency"):
        LossConfig(consistency="l1")
    with pytest.raises(DiffsegError, match="w_cond"):
        LossConfig(w_cond=-1.0)
