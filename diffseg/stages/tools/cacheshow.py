"""`diffseg cache show`: pictures a person can read of one cached sample.

- `<branch>_features.png`: one row per res/blk layer, one column per saved step, after
  the label. Each cell maps the features to RGB with a PCA: per-channel robust
  normalisation (median, interquartile range), the 3 principal components over
  channels fitted on all steps of that layer together (so a colour means the same
  feature direction across a row), each component stretched between its 1st and 99th
  percentile, upscaled (nearest) to the label size.
- `<branch>_<layer>_t<step>.png` for xattn layers: the paper's Fig. 3 view, one heat map
  per class with its name (one colour scale for all classes of the picture), next to
  the label.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from diffseg.cache import CacheReader, schema
from diffseg.core import location
from diffseg.core.classes import CITYSCAPES, CLASS_NAMES, ClassTable, present_classes
from diffseg.core.outputs import check_outputs
from diffseg.stages.viz import pca_rgb, upscale

CELL_IN = 2.2  # inches per picture
DPI = 90


def legend_handles(label_HW: np.ndarray, table: ClassTable = CITYSCAPES) -> list[Patch]:
    present = present_classes(label_HW)
    return [Patch(color=table.palette[c] / 255, label=table.names[c]) for c in present]


def label_panel(ax, label_HW: np.ndarray, title: str, table: ClassTable = CITYSCAPES) -> None:
    ax.imshow(table.colorize(label_HW), interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def feature_grid(r: CacheReader, i: int, branch: str, layers: list[str], label_HW, out: Path) -> Path:
    steps = r.save_steps
    rows, cols = len(layers), len(steps) + 1
    handles = legend_handles(label_HW, r.record.dataset.class_table)
    ncol = max(1, int(CELL_IN * cols / 1.4))
    top, bottom = 0.8, 0.3 + 0.25 * -(-len(handles) // ncol)  # inches for the title and the legend
    fig, axes = plt.subplots(rows, cols, figsize=(CELL_IN * cols, CELL_IN * rows + top + bottom), squeeze=False)
    specs = r.layer_specs
    for row, layer in enumerate(layers):
        feats = r.read(i, [schema.feature_name(branch, layer)])[schema.feature_name(branch, layer)]
        rgb = pca_rgb(feats)
        spec = specs[layer]
        label_panel(axes[row, 0], label_HW, "label (train ids)", r.record.dataset.class_table)
        axes[row, 0].set_ylabel(
            f"{layer}\n{spec.kind}, {spec.channels} ch\n{spec.size[0]}x{spec.size[1]} (1/{spec.stride})", fontsize=9
        )
        for col, t in enumerate(steps, start=1):
            ax = axes[row, col]
            ax.imshow(upscale(rgb[col - 1], label_HW.shape), interpolation="nearest")
            ax.set_title(f"{layer}  t={t}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(
        f"{branch} branch, sample {r.ids[i]} (index {i})\nfeatures as RGB: 3 principal "
        "components per layer, fitted over its steps",
        fontsize=10,
    )
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, bottom / height, 1, 1 - top / height))
    path = out / features_name(branch)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def class_names_of(r: CacheReader, n: int) -> list[str]:
    """Names of the xattn channels: the cache's active classes."""
    names = r.record.class_names
    if len(names) == n:
        return names
    return list(CLASS_NAMES) if n == len(CLASS_NAMES) else [f"class {k}" for k in range(n)]


def xattn_grid(r: CacheReader, i: int, branch: str, layer: str, step: int, label_HW, out: Path) -> Path:
    maps_SKhw = r.read(i, [schema.feature_name(branch, layer)])[schema.feature_name(branch, layer)]
    maps_Khw = maps_SKhw[step].astype(np.float32)
    names = class_names_of(r, maps_Khw.shape[0])
    n = len(names) + 1
    cols = min(5, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(CELL_IN * cols + 0.8, CELL_IN * rows + 0.8), squeeze=False)
    label_panel(axes[0, 0], label_HW, "label", r.record.dataset.class_table)
    vmax = max(float(maps_Khw.max()), 1e-6)  # one scale for all classes: attention is comparable
    for k, name in enumerate(names, start=1):
        ax = axes.flat[k]
        peak = float(maps_Khw[k - 1].max())
        im = ax.imshow(
            upscale(maps_Khw[k - 1], label_HW.shape), cmap="inferno", vmin=0, vmax=vmax, interpolation="nearest"
        )
        ax.set_title(f"{name} (max {peak:.2f})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.flat[n:]:
        ax.axis("off")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="cross-attention (mean over heads and class tokens)")
    t = r.save_steps[step]
    fig.suptitle(f"{branch} {layer} cross-attention per class, t={t}, sample {r.ids[i]} (index {i})", fontsize=11)
    path = out / xattn_name(branch, layer, t)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def features_name(branch: str) -> str:
    return f"{branch}_features.png"


def xattn_name(branch: str, layer: str, step: int) -> str:
    return f"{branch}_{layer}_t{step}.png"


def _layers(r: CacheReader, branch: str) -> tuple[list[str], list[str]]:
    """(res/blk layers, xattn layers) the cache holds in `branch`."""
    specs, held = r.layer_specs, r.feature_names()
    layers = [k for k in specs if schema.feature_name(branch, k) in held]
    return [k for k in layers if specs[k].kind != "xattn"], [k for k in layers if specs[k].kind == "xattn"]


def picture_paths(r: CacheReader, out: Path) -> list[Path]:
    """The files `write_pictures` writes, in its order."""
    paths = []
    for branch in r.branches:
        plain, xattn = _layers(r, branch)
        paths += [out / features_name(branch)] if plain else []
        paths += [out / xattn_name(branch, layer, t) for layer in xattn for t in r.save_steps]
    return paths


def write_pictures(r: CacheReader, out: Path, i: int, *, overwrite: bool = False) -> list[Path]:
    """All pictures of sample i of the cache into `out`; -> the files written. Refused before
    anything is written when `out` overlaps the (local) cache, or holds one of the pictures and
    `overwrite` is False (core/outputs.py)."""
    r.check_complete(i)
    inputs = [location.local_path(r.path)] if location.is_local(r.path) else []
    check_outputs(out, picture_paths(r, out), inputs, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    label_HW = r.read(i, [schema.LABELS])[schema.LABELS]
    paths = []
    for branch in r.branches:
        plain, xattn = _layers(r, branch)
        if plain:
            paths.append(feature_grid(r, i, branch, plain, label_HW, out))
        for layer in xattn:
            paths += [xattn_grid(r, i, branch, layer, s, label_HW, out) for s in range(len(r.save_steps))]
    return paths
