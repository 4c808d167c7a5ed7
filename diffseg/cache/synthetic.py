"""Synthetic caches with real layer geometry, for tests and benchmarks (no model needed).

`layer_set("tiny" | "sd21", resolution)` gives LayerSpecs shaped like the tiny model's or
SD 2.1's up blocks 1-3 (res2 and blk1 at each, plus xattn1 on up3 when asked);
`make_cache` writes N seeded samples through CacheWriter, so everything downstream is
exercised on the real format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffseg.cache import schema
from diffseg.cache.writer import CacheWriter
from diffseg.core.classes import IGNORE
from diffseg.core.layers import LayerSpec

# channels of up blocks 1, 2, 3 (stride 32, 16, 8): SD 2.1 (METHOD.md §3) and the tiny model
CHANNELS = {"sd21": (1280, 640, 320), "tiny": (64, 64, 32)}


def layer_set(model: str, resolution: tuple[int, int], xattn_classes: int = 0) -> dict[str, LayerSpec]:
    """{layer: LayerSpec} for up blocks 1-3: res2 and blk1 (+ up3.xattn1 with K classes)."""
    W, H = resolution
    specs = {}
    for block, (channels, stride) in enumerate(zip(CHANNELS[model], (32, 16, 8)), start=1):
        size = (H // stride, W // stride)
        for kind, j in (("res", 2), ("blk", 1)):
            specs[f"up{block}.{kind}{j}"] = LayerSpec(kind=kind, stride=stride, channels=channels, size=size)
    if xattn_classes:
        specs["up3.xattn1"] = LayerSpec(kind="xattn", stride=8, channels=xattn_classes, size=(H // 8, W // 8))
    return specs


def synthetic_attrs(
    layers: dict[str, LayerSpec],
    save_steps: list[int],
    branches: list[str],
    resolution: tuple[int, int],
    kind: str = "train",
    seed: int = 0,
) -> dict:
    return {
        "model": {"name": "synthetic", "fingerprint": "5e" * 8, "prediction_type": "v_prediction"},
        "dataset": {"name": "demo", "split": "train" if kind == "train" else "val", "info": {}},
        "extract": {
            "save_steps": list(save_steps),
            "layers": list(layers),
            "branches": list(branches),
            "resolution": list(resolution),
            "seed": seed,
        },
        "layers": {k: v.to_dict() for k, v in layers.items()},
        "save_steps": list(save_steps),
        "branches": list(branches),
        "kind": kind,
        "resolution": list(resolution),
    }


def sample_label(rng: np.random.Generator, size_hw: tuple[int, int]) -> np.ndarray:
    """[H, W] uint8 street-like train ids: sky, building, road bands with seeded boxes."""
    H, W = size_hw
    label = np.full((H, W), 2, np.uint8)  # building
    label[: H // 4] = 10  # sky
    label[H * 5 // 8 :] = 0  # road
    label[H * 5 // 8 : H * 11 // 16, : W // 5] = 1  # sidewalk
    for _ in range(6):
        h, w = int(rng.integers(H // 10, H // 3)), int(rng.integers(W // 12, W // 4))
        y, x = int(rng.integers(H // 4, H - h)), int(rng.integers(0, W - w))
        label[y : y + h, x : x + w] = rng.choice([5, 8, 11, 13, 13, 18])
    label[-2:, :] = IGNORE  # ego-vehicle edge
    return label


def sample_arrays(
    rng: np.random.Generator,
    layers: dict[str, LayerSpec],
    n_steps: int,
    branches: list[str],
    label_HW: np.ndarray,
) -> dict[str, np.ndarray]:
    """Features that depend on the label (a per-class direction plus noise), so pictures of
    them show the scene; xattn maps peak on their class."""
    out = {}
    for name, spec in layers.items():
        h, w = spec.size
        small_hw = label_HW[:: spec.stride, :: spec.stride][:h, :w].astype(np.int64) % 19
        emb_KC = np.random.default_rng(len(name) * 131 + spec.channels).standard_normal((19, spec.channels))
        for b in branches:
            if spec.kind == "xattn":
                onehot = np.eye(spec.channels, dtype=np.float32)[small_hw % spec.channels].transpose(2, 0, 1)
                x = 0.6 * onehot[None] + 0.1 * rng.random((n_steps, spec.channels, h, w))
            else:
                base_Chw = emb_KC[small_hw].transpose(2, 0, 1)
                x = base_Chw[None] + (0.3 + 0.3 * np.arange(n_steps)[:, None, None, None]) * rng.standard_normal(
                    (n_steps, spec.channels, h, w)
                )
            out[schema.feature_name(b, name)] = x.astype(np.float16)
    return out


def make_cache(
    path: str | Path,
    n: int,
    model: str = "tiny",
    resolution: tuple[int, int] = (64, 64),
    save_steps: tuple[int, ...] = (60, 20, 1),
    branches: tuple[str, ...] = ("uncond", "cond"),
    xattn_classes: int = 0,
    kind: str = "train",
    write: int | None = None,
    seed: int = 0,
) -> CacheWriter:
    """A cache of n samples, the first `write` (default all) of them written; eval caches
    get original labels of varying size (up to 1.5x the resolution)."""
    layers = layer_set(model, resolution, xattn_classes)
    attrs = synthetic_attrs(layers, list(save_steps), list(branches), resolution, kind, seed)
    arrays = {
        schema.feature_name(b, k): ((len(save_steps), s.channels, *s.size), np.float16)
        for b in branches
        for k, s in layers.items()
    }
    W, H = resolution
    orig_max = (H * 3 // 2, W * 3 // 2) if kind == "eval" else None
    ids = [f"city/img_{k:05d}" for k in range(n)]
    writer = CacheWriter.create(path, attrs, ids, arrays, orig_label_max=orig_max)
    for i in range(n if write is None else write):
        rng = np.random.default_rng([seed, i])
        label = sample_label(rng, (H, W))
        feats = sample_arrays(rng, layers, len(save_steps), list(branches), label)
        orig = None
        if orig_max:
            orig = sample_label(rng, (H + int(rng.integers(0, H // 2 + 1)), W + int(rng.integers(0, W // 2 + 1))))
        writer.write_sample(i, feats, label, orig)
    return writer
