"""Synthetic caches in the real format, for tests and benchmarks (no model needed).

One writer: `make_cache` builds a CacheRecord (`synthetic_record`) with the geometry of
core/layers.py from a U-Net config (`unet_geometry`: the tiny model's by default) and writes
the samples through CacheWriter, so everything downstream runs on the real format. Options:

- labels="street": sky/building/road bands with seeded boxes (pictures look like a scene);
  labels="blocks": `block`-px squares of `classes` (a task a small head can learn).
- features="scene": a per-class direction plus noise, xattn maps peaking on their class;
  features="label": unit noise + `signal` x the label's one-hot pooled to the layer's stride
  (signal 0: pure noise, e.g. benchmarks that only need the shapes).
- kind="eval" keeps original labels: `orig_scale` x the resolution (block labels: 2x by default),
  or street labels of seeded sizes up to 1.5x;
  `cond_only` layers exist in the cond branch only; `write` < n leaves samples pending.

    make_cache(tmp_path / "c", 3, write=2, xattn_classes=4)
    make_cache(tmp_path / "gtav", 8, unet=unet_geometry((8, 8, 4, 4)), labels="blocks", features="label", signal=4.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from diffseg.cache import schema, store
from diffseg.cache.record import CacheRecord, DatasetRecord, ExtractRecord, ModelRecord, ViewsRule
from diffseg.cache.writer import CacheWriter, feature_arrays
from diffseg.core.classes import IGNORE, NUM_CLASSES
from diffseg.core.layers import LayerSpec, layer_specs


def unet_geometry(channels: tuple[int, int, int, int]) -> dict:
    """The part of a UNet2DConditionModel config that decides layer geometry, with these channels
    for up blocks 0..3 (up block 0 without attention, three layers per block, as SD 2.1)."""
    return {
        "block_out_channels": tuple(reversed(channels)),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        "layers_per_block": 2,
    }


TINY = unet_geometry((64, 64, 64, 32))  # pipeline/builtin.py TINY_UNET (a test checks they agree)
SD21 = unet_geometry((1280, 1280, 640, 320))  # docs/design/method.md §3
DEFAULT_LAYERS = ("up1.res2", "up2.res2", "up3.res2", "up1.blk1", "up2.blk1", "up3.blk1")


def synthetic_record(
    layers: Mapping[str, LayerSpec],
    *,
    n: int,
    save_steps: Sequence[int],
    branches: Sequence[str],
    resolution: tuple[int, int],
    kind: str = "train",
    dataset: str = "demo",
    split: str | None = None,
    fingerprint: str = "5e" * 8,
    seed: int = 0,
    classes: Sequence[int] = tuple(range(NUM_CLASSES)),
) -> CacheRecord:
    """The record of a synthetic cache: a trajectory that evaluates exactly the saved steps, the
    empty unconditional prompt, no prompts for the classes."""
    trajectory = {
        "steps": sorted(set(int(t) for t in save_steps)),
        "save_steps": [int(t) for t in save_steps],
        "layers": list(layers),
        "eta": 1.0,
        "eta_window": [10, 250],
        "encode": "mean",
        "raw_eps": False,
        "guidance": 5.0,
        "blk_sum": False,
        "seed": seed,
    }
    extract = ExtractRecord(
        preset="synthetic",
        trajectory=trajectory,
        views=1,
        views_rule=ViewsRule(mode="resize"),
        uncond_prompt="empty",
        uncond_prompt_text="",
        prompt_template="",
        classes=tuple(classes),
        class_prompts={},
        compute_dtype="float32",
        limit=None,
        images=n,
        ids_sha256="",
    )
    return CacheRecord(
        kind=kind,
        model=ModelRecord(name="synthetic", fingerprint=fingerprint, prediction_type="v_prediction"),
        dataset=DatasetRecord(name=dataset, split=split or ("train" if kind == "train" else "val")),
        extract=extract,
        layers=dict(layers),
        branches=tuple(branches),
        resolution=resolution,
        samples=n,
    )


def street_label(rng: np.random.Generator, size_hw: tuple[int, int]) -> np.ndarray:
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


def block_label(rng: np.random.Generator, size_hw: tuple[int, int], classes, block: int) -> np.ndarray:
    """[H, W] uint8: block x block squares, each a class drawn from `classes`."""
    h, w = size_hw
    grid = rng.choice(np.asarray(classes, np.uint8), size=(h // block, w // block))
    return np.kron(grid, np.ones((block, block), np.uint8)).astype(np.uint8)


def scene_features(rng, spec: LayerSpec, name: str, n_steps: int, label_HW: np.ndarray) -> np.ndarray:
    """[S, C, h, w] float16 that shows the scene: a per-class direction plus noise growing with
    the step; xattn maps peak on their class."""
    h, w = spec.size
    small_hw = label_HW[:: spec.stride, :: spec.stride][:h, :w].astype(np.int64) % NUM_CLASSES
    if spec.kind == "xattn":
        onehot = np.eye(spec.channels, dtype=np.float32)[small_hw % spec.channels].transpose(2, 0, 1)
        x = 0.6 * onehot[None] + 0.1 * rng.random((n_steps, spec.channels, h, w))
    else:
        emb_KC = np.random.default_rng(len(name) * 131 + spec.channels).standard_normal((NUM_CLASSES, spec.channels))
        base_Chw = emb_KC[small_hw].transpose(2, 0, 1)
        noise = rng.standard_normal((n_steps, spec.channels, h, w))
        x = base_Chw[None] + (0.3 + 0.3 * np.arange(n_steps)[:, None, None, None]) * noise
    return x.astype(np.float16)


def label_features(rng, spec: LayerSpec, n_steps: int, label_HW: np.ndarray, signal: float) -> np.ndarray:
    """[S, C, h, w] float16: unit noise + signal * the label's one-hot average-pooled to the
    layer's stride (channels beyond the 19 classes pure noise)."""
    stride, C = spec.stride, spec.channels
    h, w = label_HW.shape[0] // stride, label_HW.shape[1] // stride
    feats = rng.standard_normal((n_steps, C, h, w)).astype(np.float32)
    if signal:
        onehot = np.zeros((C, *label_HW.shape), np.float32)
        for c in range(min(C, NUM_CLASSES)):
            onehot[c] = label_HW == c
        feats += signal * onehot.reshape(C, h, stride, w, stride).mean(axis=(2, 4))[None]
    return feats.astype(np.float16)


def sample_arrays(
    rng, specs: Mapping[str, LayerSpec], names: Sequence[str], n_steps: int, label_HW, features: str, signal: float
) -> dict[str, np.ndarray]:
    """{"<branch>/<layer>": features of one sample} for the arrays `names`, drawn in that order."""
    out = {}
    for name in names:
        layer = schema.split_name(name)[1]
        if features == "scene":
            out[name] = scene_features(rng, specs[layer], layer, n_steps, label_HW)
        elif features == "label":
            out[name] = label_features(rng, specs[layer], n_steps, label_HW, signal)
        else:
            raise ValueError(f"features must be scene or label: {features!r}")
    return out


def make_cache(
    path: str | Path,
    n: int = 6,
    *,
    unet: Mapping = TINY,
    layers: Sequence[str] = DEFAULT_LAYERS,
    xattn_classes: int = 0,
    resolution: tuple[int, int] = (64, 64),
    save_steps: Sequence[int] = (60, 20, 1),
    branches: Sequence[str] = ("uncond", "cond"),
    cond_only: Sequence[str] = (),
    kind: str = "train",
    dataset: str = "demo",
    split: str | None = None,
    fingerprint: str = "5e" * 8,
    labels: str = "street",
    classes: Sequence[int] = tuple(range(8)),
    block: int = 16,
    features: str = "scene",
    signal: float = 0.0,
    orig_scale: int | None = None,
    ids: list[str] | None = None,
    write: int | None = None,
    seed: int = 0,
    packing: str = "stride",
) -> Path:
    """A synthetic cache of n samples at `path`, the first `write` (default all) written; -> path.
    `xattn_classes` > 0 adds up3.xattn1 with that many channels; `packing`: cache/packs.py's."""
    names = list(layers) + (["up3.xattn1"] if xattn_classes else [])
    specs = layer_specs(unet, names, resolution, xattn_classes)
    record = synthetic_record(
        specs,
        n=n,
        save_steps=save_steps,
        branches=branches,
        resolution=resolution,
        kind=kind,
        dataset=dataset,
        split=split,
        fingerprint=fingerprint,
        seed=seed,
        classes=tuple(range(xattn_classes)) if xattn_classes else tuple(range(NUM_CLASSES)),
    )
    arrays = {
        name: shape
        for name, shape in feature_arrays(record).items()
        if schema.split_name(name)[0] == "cond" or schema.split_name(name)[1] not in cond_only
    }
    scale = orig_scale if orig_scale is not None or labels != "blocks" else 2  # block labels scale exactly
    W, H = resolution
    orig_max = None
    if kind == "eval":
        orig_max = (H * 3 // 2, W * 3 // 2) if scale is None else (H * scale, W * scale)
    ids = ids or [f"city/img_{k:05d}" for k in range(n)]
    writer = CacheWriter.create(path, record, ids, arrays, orig_label_max=orig_max, packing=packing)
    stream = np.random.default_rng(seed)  # labels="blocks": one stream for the whole cache
    for i in range(n if write is None else write):
        rng = stream if labels == "blocks" else np.random.default_rng([seed, i])
        label = block_label(rng, (H, W), classes, block) if labels == "blocks" else street_label(rng, (H, W))
        feats = sample_arrays(rng, specs, sorted(arrays), len(save_steps), label, features, signal)
        orig = None
        if kind == "eval" and scale is not None:
            orig = np.kron(label, np.ones((scale, scale), np.uint8))
        elif kind == "eval":
            orig = street_label(rng, (H + int(rng.integers(0, H // 2 + 1)), W + int(rng.integers(0, W // 2 + 1))))
        writer.write_sample(i, feats, label, orig)
    return Path(path)


def poison_sample(path: str | Path, name: str, i: int) -> None:
    """Overwrite sample i of feature array `name` (its slab of its pack) with NaN, bypassing the writer's
    finite check (tests)."""
    writer = CacheWriter.open(path)
    slot = writer.packing.slots[name]
    arr = store.array(writer.group, slot.pack)
    value = np.asarray(arr[i])
    value[:, slot.offset : slot.offset + slot.width] = np.nan
    arr[i] = value
