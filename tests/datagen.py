"""Generators of tiny datasets in the exact on-disk formats of docs/guides/datasets.md (for tests).

Every `make_*` writes into `root` and returns {sample id: expected train-id label uint8 [H, W]}.
Sizes are (W, H). Content is seeded: the same call writes the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from diffseg.data.tables import CITYSCAPES_TABLE, MAPILLARY_TABLES, SYNTHIA_TABLE

# Cityscapes label ids used in generated id-space labels: with and without a train id.
CS_IDS = (0, 1, 4, 7, 8, 11, 13, 17, 20, 21, 23, 24, 26, 33, 34)
SYN_IDS = (0, 1, 2, 3, 8, 10, 13, 21, 22)
MAP_IDS = (13, 17, 27, 41, 44, 45, 55, 65)
TRAIN_IDS = (0, 1, 2, 8, 10, 11, 13, 18, 255)


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def blocks(rng: np.random.Generator, size: tuple[int, int], values) -> np.ndarray:
    """Label map of 4x4 blocks drawn from `values` (uint8 [H, W]; every value appears once at least)."""
    w, h = size
    gh, gw = -(-h // 4), -(-w // 4)
    grid = rng.choice(np.asarray(values), (gh, gw))
    grid.flat[: len(values)] = values[: grid.size]
    return np.kron(grid, np.ones((4, 4), grid.dtype))[:h, :w].astype(np.uint16 if max(values) > 255 else np.uint8)


def rgb(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def save_image(path: Path, image: np.ndarray) -> None:
    Image.fromarray(image).save(_mk(path))


def save_palette(path: Path, ids: np.ndarray) -> None:
    """Palette ("P") PNG whose pixel index is the id (as GTAV and Mapillary ship them)."""
    img = Image.fromarray(ids.astype(np.uint8), mode="P")
    img.putpalette([(i * 37) % 256 for i in range(256 * 3)])
    img.save(_mk(path))


def save_grey(path: Path, values: np.ndarray) -> None:
    Image.fromarray(values.astype(np.uint8), mode="L").save(_mk(path))


def save_bomb(path: Path, size: tuple[int, int], colour_type: int = 2, bit_depth: int = 8) -> None:
    """A PNG whose header claims `size` (W, H) pixels but that holds a single row of them: what a
    decompression bomb shows a reader before decoding (the real one, a 1 MB file of 20000x20000
    zeros, decodes to 1.2 GB). colour_type 2 RGB, 0 grey, 3 palette; bit_depth 16: Synthia labels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    w, h = size
    channels = {0: 1, 2: 3, 3: 1}[colour_type]
    row = b"\0" + bytes(w * channels * bit_depth // 8)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, colour_type, 0, 0, 0)
    plte = chunk(b"PLTE", bytes(768)) if colour_type == 3 else b""
    _mk(path).write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + plte + chunk(b"IDAT", zlib.compress(row)) + chunk(b"IEND", b"")
    )


def make_gtav(root: Path, n: int = 2, size=(32, 24), seed: int = 0) -> dict:
    rng, out = np.random.default_rng(seed), {}
    for k in range(1, n + 1):
        ids = blocks(rng, size, CS_IDS)
        save_image(root / "images" / f"{k:05d}.png", rgb(rng, size))
        save_palette(root / "labels" / f"{k:05d}.png", ids)
        out[f"{k:05d}"] = CITYSCAPES_TABLE[ids]
    return out


def make_synthia(root: Path, n: int = 2, size=(32, 24), seed: int = 0) -> dict:
    """16-bit 3-channel labels: R = class id, G = instance id (> 255 somewhere), B = 0."""
    rng, out = np.random.default_rng(seed), {}
    for k in range(n):
        cls = blocks(rng, size, SYN_IDS).astype(np.uint16)
        inst = np.where(cls == 8, 1001, 0).astype(np.uint16)
        save_image(root / "RGB" / f"{k:07d}.png", rgb(rng, size))
        bgr = np.stack([np.zeros_like(cls), inst, cls], -1)  # OpenCV writes BGR
        cv2.imwrite(str(_mk(root / "GT" / "LABELS" / f"{k:07d}.png")), bgr)
        out[f"{k:07d}"] = SYNTHIA_TABLE[cls.astype(np.uint8)]
    return out


def make_cityscapes(
    root: Path,
    split: str = "val",
    n: int = 2,
    size=(32, 16),
    seed: int = 0,
    city: str = "aachen",
    label_ids: bool = True,
    train_ids: bool = False,
) -> dict:
    """labelIds (shipped) and optionally user-made labelTrainIds (deliberately different content)."""
    rng, out = np.random.default_rng(seed), {}
    for k in range(n):
        sample_id = f"{city}/{city}_{k:06d}_000019"
        ids = blocks(rng, size, CS_IDS)
        save_image(root / "leftImg8bit" / split / f"{sample_id}_leftImg8bit.png", rgb(rng, size))
        base = root / "gtFine" / split / f"{sample_id}_gtFine"
        if label_ids:
            save_grey(Path(f"{base}_labelIds.png"), ids)
        if train_ids:
            trainids = blocks(rng, size, TRAIN_IDS)
            save_grey(Path(f"{base}_labelTrainIds.png"), trainids)
        out[sample_id] = CITYSCAPES_TABLE[ids] if label_ids else trainids
    return out


def make_bdd100k(
    root: Path, split: str = "val", n: int = 2, size=(32, 16), seed: int = 0, legacy: bool = False
) -> dict:
    rng, out = np.random.default_rng(seed), {}
    for k in range(n):
        sample_id = f"{k:08x}-{k + 1:08x}"
        label = blocks(rng, size, TRAIN_IDS)
        if legacy:
            img, lab = (
                root / "seg" / "images" / split / f"{sample_id}.jpg",
                root / "seg" / "labels" / split / f"{sample_id}_train_id.png",
            )
        else:
            img, lab = (
                root / "images" / "10k" / split / f"{sample_id}.jpg",
                root / "labels" / "sem_seg" / "masks" / split / f"{sample_id}.png",
            )
        save_image(img, rgb(rng, size))
        save_grey(lab, label)
        out[sample_id] = label
    return out


def make_mapillary(
    root: Path, split: str = "val", n: int = 2, size=(24, 20), seed: int = 0, layout: str = "v1.2", mapping: str = "A"
) -> dict:
    """layout "v1.2": {split}/labels/; "v2.0": {split}/v1.2/labels/ (and an unused v2.0/labels/)."""
    folder = root / {"train": "training", "val": "validation"}[split]
    labels = folder / "labels" if layout == "v1.2" else folder / "v1.2" / "labels"
    rng, out = np.random.default_rng(seed), {}
    for k in range(n):
        key = f"key{k:03d}_{'x' * 10}"
        ids = blocks(rng, size, MAP_IDS)
        save_image(folder / "images" / f"{key}.jpg", rgb(rng, size))
        save_palette(labels / f"{key}.png", ids)
        if layout == "v2.0":  # v2.0 labels use other ids: must never be read
            save_palette(folder / "v2.0" / "labels" / f"{key}.png", np.full_like(ids, 99))
        out[key] = MAPILLARY_TABLES[mapping][ids]
    return out


def make_acdc(
    root: Path,
    split: str = "val",
    n: int = 1,
    size=(32, 18),
    seed: int = 0,
    conditions=("fog", "night", "rain", "snow"),
    flat: bool = False,
    label_ids: bool = False,
) -> dict:
    """Per-condition layout (with an unlabelled `{split}_ref` folder) or the flattened DAFormer one."""
    rng, out = np.random.default_rng(seed), {}
    for cond in conditions:
        for k in range(n):
            seq = f"GP{cond.upper()}{k}"
            stem = f"{seq}_frame_{k:06d}"
            rel = stem if flat else f"{seq}/{stem}"
            img_dir = root / "rgb_anon" / split if flat else root / "rgb_anon" / cond / split
            gt_dir = root / "gt" / split if flat else root / "gt" / cond / split
            save_image(img_dir / f"{rel}_rgb_anon.png", rgb(rng, size))
            if label_ids:
                ids = blocks(rng, size, CS_IDS)
                save_grey(gt_dir / f"{rel}_gt_labelIds.png", ids)
                label = CITYSCAPES_TABLE[ids]
            else:
                label = blocks(rng, size, TRAIN_IDS)
                save_grey(gt_dir / f"{rel}_gt_labelTrainIds.png", label)
            if not flat:  # reference frames: unlabelled, must be skipped
                save_image(root / "rgb_anon" / cond / f"{split}_ref" / seq / f"{stem}_ref_rgb_anon.png", rgb(rng, size))
            out[rel if flat else f"{cond}/{rel}"] = label
    return out


def make_darkzurich(root: Path, n: int = 2, size=(32, 18), seed: int = 0) -> dict:
    rng, out = np.random.default_rng(seed), {}
    for k in range(n):
        stem = f"GOPR0356_frame_{k:06d}"
        label = blocks(rng, size, TRAIN_IDS)
        save_image(root / "rgb_anon" / "val" / "night" / "GOPR0356" / f"{stem}_rgb_anon.png", rgb(rng, size))
        save_grey(root / "gt" / "val" / "night" / "GOPR0356" / f"{stem}_gt_labelTrainIds.png", label)
        out[f"night/GOPR0356/{stem}"] = label
    return out


FOLDER_CLASSES = (
    {"id": 0, "name": "background", "color": [0, 0, 0]},
    {"id": 1, "name": "crop row", "color": [0, 160, 0], "prompt": "rows of crops"},
    {"id": 2, "name": "weed", "color": [200, 40, 40]},
    {"id": 3, "name": "soil", "color": [120, 80, 30]},
    {"id": 4, "name": "stone", "color": [128, 128, 128]},
)


def make_folder(
    root: Path,
    n: int = 2,
    size=(64, 64),
    seed: int = 0,
    split: str = "train",
    ignore: int = 255,
    classes=FOLDER_CLASSES,
    suffix: str = ".png",
) -> dict:
    """A `folder` dataset (data/folder.py): images/<split>/, labels/<split>/ of class ids and the table's
    ignore value, classes.json (the plain list when ignore is 255, else {"classes", "ignore"}). The
    expected labels have the ignore value as 255."""
    rng = np.random.default_rng(seed)
    table = list(classes) if ignore == 255 else {"classes": list(classes), "ignore": ignore}
    _mk(root / "classes.json").write_text(json.dumps(table))
    out = {}
    for i in range(n):
        sid = f"field_{i:03d}"
        ids = blocks(rng, size, (*range(len(classes)), ignore))
        save_image(root / "images" / split / f"{sid}{suffix}", rgb(rng, size))
        save_grey(root / "labels" / split / f"{sid}.png", ids)
        out[sid] = np.where(ids == ignore, 255, ids).astype(np.uint8)
    return out
