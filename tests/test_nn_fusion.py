"""Fusion block and Segmentor: shapes for stride subsets, refusals, parameter counts."""

import itertools
import json
import math

import pytest
import torch

from diffseg.core.errors import DiffsegError
from diffseg.nn import FusionConfig, Segmentor, fusion_preset
from diffseg.nn.fusion import DiffFusion
from diffseg.nn.head import DAFormerHead

CHANNELS = {32: 6, 16: 5, 8: 4}  # tiny per-layer channels for CPU runs


def specs_for(strides, channels=CHANNELS, per_stride=2):
    block = {32: 1, 16: 2, 8: 3}
    return {f"up{block[s]}.res{j}": {"stride": s, "channels": channels[s]} for s in strides for j in range(per_stride)}


def feats_for(specs, n_steps, size=(64, 96), batch=2, device="cpu"):
    g = torch.Generator().manual_seed(0)
    H, W = size
    return {
        k: (
            torch.randn(batch, n_steps, v["channels"], H // v["stride"], W // v["stride"], generator=g)
            if device == "cpu"
            else torch.empty(batch, n_steps, v["channels"], H // v["stride"], W // v["stride"], device=device)
        )
        for k, v in specs.items()
    }


SUBSETS = [c for r in (1, 2, 3) for c in itertools.combinations((8, 16, 32), r)]


@pytest.mark.parametrize("strides", SUBSETS)
def test_light_segmentor_on_every_stride_subset(strides):
    torch.manual_seed(0)
    specs = specs_for(strides)
    seg = Segmentor(specs, n_steps=2, fusion="light")
    pyramid = seg.fusion(feats_for(specs, 2))
    assert [tuple(p.shape) for p in pyramid] == [(2, 32, 16, 24), (2, 64, 8, 12), (2, 128, 4, 6), (2, 256, 2, 3)]
    logits = seg(feats_for(specs, 2))
    assert logits.shape == (2, 19, 16, 24)
    logits.square().mean().backward()  # every parameter takes part (no unused parameters under DDP)
    unused = [n for n, p in seg.named_parameters() if p.grad is None]
    assert unused == []


@pytest.mark.parametrize("strides", [(8, 16, 32), (16,), (8, 32)])
def test_reference_shapes_on_meta(strides):
    specs = specs_for(strides)
    with torch.device("meta"):
        seg = Segmentor(specs, n_steps=3, fusion="reference", num_classes=7)
    pyramid = seg.fusion(feats_for(specs, 3, size=(128, 64), batch=1, device="meta"))
    assert [tuple(p.shape) for p in pyramid] == [(1, 256, 32, 16), (1, 512, 16, 8), (1, 1024, 8, 4), (1, 2048, 4, 2)]
    assert seg.head(pyramid).shape == (1, 7, 32, 16)


def sd21_reference_specs():
    """res + blk, j = 0..2, up blocks 1-3 of SD 2.1 (docs/design/method.md §3)."""
    widths = {1: (32, 1280), 2: (16, 640), 3: (8, 320)}
    return {
        f"up{i}.{kind}{j}": {"stride": s, "channels": c}
        for i, (s, c) in widths.items()
        for kind in ("res", "blk")
        for j in range(3)
    }


def test_parameter_count_sd21_reference():
    with torch.device("meta"):
        seg = Segmentor(sd21_reference_specs(), n_steps=9, fusion="reference")

    def count(m):
        return sum(p.numel() for p in m.parameters())

    # stride 32: 9 steps x 6 layers x 1280 = 69,120 input channels; 1x1 -> 512, 3x3 512, 1x1 -> 2048,
    # 1x1 shortcut -> 2048, each conv without bias + GroupNorm (2 x channels)
    c_in = 9 * 6 * 1280
    by_hand = c_in * 512 + 512 * 512 * 9 + 512 * 2048 + c_in * 2048 + 2 * (512 + 512 + 2048 + 2048)
    assert count(seg.fusion.reduce["32"]) == by_hand == 180_365_312
    assert 290e6 < count(seg.fusion) < 320e6  # docs/design/method.md: about 300 M
    assert 300e6 < count(seg) < 320e6
    with torch.device("meta"):
        light = Segmentor(sd21_reference_specs(), n_steps=9, fusion="light")
    assert count(light) < count(seg) / 8


def test_refuses_up_block_0_and_mismatched_features():
    with pytest.raises(DiffsegError, match="does not use up block 0"):
        Segmentor({"up0.res1": {"stride": 64, "channels": 8}}, n_steps=1, fusion="light")
    with pytest.raises(DiffsegError, match="at least one layer"):
        DiffFusion({}, 1, fusion_preset("light"))
    specs = specs_for((8, 16))
    seg = Segmentor(specs, n_steps=2, fusion="light")
    feats = feats_for(specs, 2)
    with pytest.raises(DiffsegError, match="up3.res0"):
        seg({**feats, "up3.res0": feats["up3.res0"][:, :1]})
    with pytest.raises(DiffsegError, match="built for layers"):
        seg({k: v for k, v in feats.items() if k != "up2.res1"})
    odd = feats_for(specs, 2, size=(48, 64))
    with pytest.raises(DiffsegError, match="not a multiple of 32"):
        seg(odd)


def test_layer_spec_objects_and_config_round_trip():
    class Spec:  # the extractor's LayerSpec exposes attributes, not keys
        stride, channels = 16, 3

    seg = Segmentor({"up2.blk0": Spec()}, n_steps=1, fusion="light")
    assert seg(feats_for({"up2.blk0": {"stride": 16, "channels": 3}}, 1)).shape == (2, 19, 16, 24)
    for name in ("reference", "light"):
        cfg = fusion_preset(name)
        assert FusionConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(DiffsegError, match="unknown fusion"):
        fusion_preset("huge")


def test_decoded_quarter_level_sees_every_stride():
    torch.manual_seed(0)
    specs = specs_for((8, 16, 32))
    fusion = DiffFusion(specs, 2, fusion_preset("light"))
    feats = {k: v.requires_grad_(True) for k, v in feats_for(specs, 2).items()}
    x4 = fusion(feats)[0]
    x4.sum().backward()  # the top-down decoder adds the 1/16 and 1/8 levels on its way to 1/4
    assert all(f.grad.abs().sum() > 0 for f in feats.values())


def test_head_convolutions_use_mmcv_convmodule_init():
    # mmcv ConvModule: kaiming_normal_(mode="fan_out", nonlinearity="relu"): std = sqrt(2 / (c_out * k * k))
    torch.manual_seed(0)
    head = DAFormerHead((64, 64, 64, 64), channels=64)
    fuse = head.fuse[0].weight  # [64, 256, 3, 3]
    assert fuse.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.03)
    assert abs(fuse.mean().item()) < 3 * math.sqrt(2 / (64 * 9)) / math.sqrt(fuse.numel())
    depthwise = head.aspp.branches[1][0][0].weight  # [256, 1, 3, 3], groups=256: fan_out = 256 * 9
    assert depthwise.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.1)
    pointwise = head.aspp.branches[0][0].weight  # [64, 256, 1, 1]
    assert pointwise.std().item() == pytest.approx(math.sqrt(2 / 64), rel=0.05)
    # PyTorch's default (kaiming_uniform a=sqrt(5)) would give std = 1 / sqrt(3 * fan_in) = 0.0361 for the 1x1
    assert pointwise.std().item() > 3 * (1 / math.sqrt(3 * 256))
    assert head.fuse[1].weight.eq(1).all() and head.fuse[1].bias.eq(0).all()
