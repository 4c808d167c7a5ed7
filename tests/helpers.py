"""Shared settings of the stage-two tests (the caches themselves come from diffseg.cache.synthetic)."""

from diffseg.cache.synthetic import unet_geometry

# Keywords of diffseg.stages.train.job.main for fast CPU test runs (light fusion, no workers).
FAST_TRAIN = dict(
    fusion="light", iters=2, warmup=0, lr=1e-3, eval_every=0, ckpt_every=1000, workers=0, device="cpu", log_every=1
)
# A small learnable cache: 32x32 block labels, features = noise (+ signal x the label), strides
# 32/16/8 -> 1x1, 2x2, 4x4 maps with 4, 4, 8 channels: the fastest set the fusion block takes.
SMALL = dict(
    resolution=(32, 32),
    unet=unet_geometry((4, 4, 4, 8)),
    layers=("up1.res2", "up2.res2", "up3.res2"),
    labels="blocks",
    features="label",
    block=8,
)

# train.main keywords of the predict tests' tiny runs (one-step demo caches, three res layers).
PREDICT_TRAIN = dict(
    layers=("up1.res2", "up2.res2", "up3.res2"),
    iters=2,
    fusion="light",
    warmup=1,
    workers=0,
    device="cpu",
    eval_every=0,
)
