"""Synthetic feature caches in the real format (CacheWriter), for stage-two tests.

Shapes mimic the `tiny` model at a small resolution (strides 32/16/8 for up blocks 1-3).
Labels are blocks of `block` px filled with classes from `classes`; with `signal > 0`
every layer carries the label: channel c of a layer is `signal * onehot(label)[c]`
(average-pooled to the layer's stride) plus unit Gaussian noise, so a model can learn
the task from features alone. Everything is drawn from a generator seeded by `seed`.

    make_cache(tmp_path / "gtav", n=8)                       # train cache, both branches
    make_cache(tmp_path / "cs", kind="eval", dataset="cityscapes", orig_scale=2)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffseg.cache import CacheWriter

STRIDES = {1: 32, 2: 16, 3: 8}
DEFAULT_LAYERS = {"up1.res2": 8, "up2.res2": 8, "up3.res2": 8, "up3.blk0": 8}
SMALL_LAYERS = {"up1.res2": 4, "up2.res2": 4, "up3.res2": 8}  # fastest set the fusion block takes


def layer_stride(layer: str) -> int:
    return STRIDES[int(layer[2])]


def layer_kind(layer: str) -> str:
    return layer.split(".")[1].rstrip("0123456789")


def synthetic_label(rng: np.random.Generator, size_hw: tuple[int, int], classes, block: int) -> np.ndarray:
    h, w = size_hw
    grid = rng.choice(np.asarray(classes, np.uint8), size=(h // block, w // block))
    return np.kron(grid, np.ones((block, block), np.uint8)).astype(np.uint8)


def encode_label(rng, label: np.ndarray, stride: int, channels: int, n_steps: int, signal: float) -> np.ndarray:
    """[S, C, h, w] float16: noise + signal * pooled one-hot of the label (channels beyond 19 pure noise)."""
    h, w = label.shape[0] // stride, label.shape[1] // stride
    feats = rng.standard_normal((n_steps, channels, h, w)).astype(np.float32)
    if signal:
        onehot = np.zeros((channels, label.shape[0], label.shape[1]), np.float32)
        for c in range(min(channels, 19)):
            onehot[c] = label == c
        pooled = onehot.reshape(channels, h, stride, w, stride).mean(axis=(2, 4))
        feats += signal * pooled[None]
    return feats.astype(np.float16)


def make_cache(
    path: Path,
    *,
    n: int = 6,
    resolution: tuple[int, int] = (64, 64),
    layers: dict | None = None,
    branches=("uncond", "cond"),
    save_steps=(60, 20, 1),
    kind: str = "train",
    dataset: str = "gtav",
    split: str = "train",
    fingerprint: str = "f00d" * 4,
    classes=tuple(range(8)),
    block: int = 16,
    signal: float = 0.0,
    seed: int = 0,
    cond_only: tuple[str, ...] = (),
    orig_scale: int = 2,
    ids: list[str] | None = None,
) -> Path:
    """Write a complete synthetic cache; `cond_only` layers (e.g. xattn) exist in the cond branch only."""
    layers = dict(DEFAULT_LAYERS if layers is None else layers)
    w, h = resolution
    n_steps = len(save_steps)
    attrs = {
        "model": {"name": "synthetic", "fingerprint": fingerprint, "prediction_type": "v_prediction"},
        "dataset": {"name": dataset, "split": split, "info": {}},
        "extract": {"preset": "synthetic", "save_steps": list(save_steps), "layers": list(layers), "seed": seed},
        "layers": {
            l: {
                "kind": layer_kind(l),
                "stride": layer_stride(l),
                "channels": c,
                "size": [h // layer_stride(l), w // layer_stride(l)],
            }
            for l, c in layers.items()
        },
        "save_steps": list(save_steps),
        "branches": list(branches),
        "kind": kind,
        "resolution": [w, h],
    }
    arrays = {
        f"{b}/{l}": ((n_steps, c, h // layer_stride(l), w // layer_stride(l)), np.float16)
        for b in branches
        for l, c in layers.items()
        if b == "cond" or l not in cond_only
    }
    ids = ids or [f"{i:05d}" for i in range(n)]
    orig_max = (h * orig_scale, w * orig_scale) if kind == "eval" else None
    writer = CacheWriter.create(path, attrs, ids, arrays, orig_label_max=orig_max)
    rng = np.random.default_rng(seed)
    for i in range(n):
        label = synthetic_label(rng, (h, w), classes, block)
        feats = {}
        for name, (shape, _) in sorted(arrays.items()):
            layer = name.split("/")[1]
            feats[name] = encode_label(rng, label, layer_stride(layer), shape[1], n_steps, signal)
        orig = np.kron(label, np.ones((orig_scale, orig_scale), np.uint8)) if kind == "eval" else None
        writer.write_sample(i, feats, label, orig)
    return Path(path)


def poison_sample(path: Path, name: str, i: int) -> None:
    """Overwrite sample i of array `name` with NaN, bypassing the writer's finite check."""
    import zarr  # tests only: the package keeps zarr inside diffseg.cache

    arr = zarr.open_group(str(path), mode="r+")[name]
    arr[i] = np.full(arr.shape[1:], np.nan, dtype=arr.dtype)


# Keywords of diffseg.stages.train.job.main for fast CPU test runs (light fusion, no workers).
FAST_TRAIN = dict(
    fusion="light", iters=2, warmup=0, lr=1e-3, eval_every=0, ckpt_every=1000, workers=0, device="cpu", log_every=1
)
# A small cache: 32x32 crops, strides 32/16/8 -> 1x1, 2x2, 4x4 feature maps.
SMALL = dict(resolution=(32, 32), layers=SMALL_LAYERS, block=8)
