"""Pictures shared by the stages: palette masks, image | prediction | ground truth panels with a
legend, prediction grids per target domain, titled rows of images, the ablation bar chart and the
row-normalised confusion matrix.

Labels are train-id maps `[H, W] uint8` (0..18, 255 = ignore); images are RGB `[H, W, 3] uint8`.
Masks are saved as palette PNGs (mode "P"): the pixel values stay the train ids, the palette
makes them readable (ignore is black). Composite pictures are drawn with Pillow; the bar chart and
the confusion matrix use matplotlib (Agg backend, imported inside the functions).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from diffseg.core.classes import CITYSCAPES, CLASS_NAMES, ClassTable, colorize
from diffseg.core.classes import present_classes as classes_in

# Layout of the composite pictures, in pixels.
GAP = 4  # between panels
TITLE_H = 22  # title strip above each panel
SWATCH = 14  # legend colour square
LEGEND_ROW_H = 20
MIN_PANEL_H = 256  # small images (tests, demo) are enlarged so text stays readable
MAX_PANEL_W = 1024  # large images (Cityscapes 2048x1024) are shrunk
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)


def palette_bytes(table: ClassTable = CITYSCAPES) -> list[int]:
    """The 256-entry palette of a label space (Cityscapes' by default) as Pillow wants it (768 ints;
    unused entries black)."""
    lut = np.zeros((256, 3), np.uint8)
    lut[: table.num_classes] = table.palette
    return lut.reshape(-1).tolist()


def palette_image(label_HW: np.ndarray, table: ClassTable = CITYSCAPES) -> Image.Image:
    """Train-id map -> mode "P" image whose indices are the train ids (255 shows black)."""
    label_HW = np.asarray(label_HW)
    assert label_HW.ndim == 2 and label_HW.dtype == np.uint8, (label_HW.shape, label_HW.dtype)
    h, w = label_HW.shape
    img = Image.frombytes("P", (w, h), np.ascontiguousarray(label_HW).tobytes())
    img.putpalette(palette_bytes(table))
    return img


def save_mask(path: Path, label_HW: np.ndarray, table: ClassTable = CITYSCAPES) -> None:
    """Write a palette PNG whose pixel values are the train ids."""
    palette_image(label_HW, table).save(Path(path), format="PNG")


def font(size: int = 14) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def panel_size(h: int, w: int) -> tuple[int, int]:
    """(H', W') of one panel: at least MIN_PANEL_H tall, at most MAX_PANEL_W wide, aspect kept."""
    scale = max(1.0, MIN_PANEL_H / h)
    scale = min(scale, MAX_PANEL_W / w) if w * scale > MAX_PANEL_W else scale
    return max(1, round(h * scale)), max(1, round(w * scale))


def legend_rows(class_ids, width: int, fnt=None, table: ClassTable = CITYSCAPES) -> list[list[int]]:
    """Greedy line wrapping of legend entries (swatch + name) into rows of at most `width` px."""
    fnt = fnt or font()
    rows: list[list[int]] = [[]]
    x = GAP
    for c in class_ids:
        w = SWATCH + 4 + int(fnt.getlength(table.names[c])) + 12
        if rows[-1] and x + w > width:
            rows.append([])
            x = GAP
        rows[-1].append(c)
        x += w
    return [r for r in rows if r]


def draw_legend(
    draw: ImageDraw.ImageDraw, class_ids, top: int, width: int, fnt=None, table: ClassTable = CITYSCAPES
) -> None:
    fnt = fnt or font()
    for r, row in enumerate(legend_rows(class_ids, width, fnt, table)):
        x, y = GAP, top + r * LEGEND_ROW_H + 3
        for c in row:
            draw.rectangle([x, y, x + SWATCH, y + SWATCH], fill=table.colors[c], outline=TEXT)
            draw.text((x + SWATCH + 4, y - 1), table.names[c], fill=TEXT, font=fnt)
            x += SWATCH + 4 + int(fnt.getlength(table.names[c])) + 12


def upscale(img_hw_: np.ndarray, size_HW: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upscaling of [h, w, ...] to [H, W, ...]."""
    H, W = size_HW
    rows = np.arange(H) * img_hw_.shape[0] // H
    cols = np.arange(W) * img_hw_.shape[1] // W
    return img_hw_[rows][:, cols]


def present_classes(*labels) -> list[int]:
    """Sorted train ids (ignore excluded) that occur in any of the given label maps (None: skipped)."""
    return sorted(set().union(*(classes_in(lab) for lab in labels if lab is not None)))


def side_by_side(
    image_HW3: np.ndarray,
    pred_HW: np.ndarray,
    gt_HW: np.ndarray | None = None,
    titles: tuple[str, ...] = ("image", "prediction", "ground truth"),
    table: ClassTable = CITYSCAPES,
) -> Image.Image:
    """image | prediction (| ground truth) with titles and a legend of the classes present.

    Size: width = n * W' + (n - 1) * GAP, height = TITLE_H + H' + legend rows * LEGEND_ROW_H,
    with (H', W') = panel_size(H, W); labels are resized with nearest neighbour.
    """
    h, w = image_HW3.shape[:2]
    for lab in (pred_HW, gt_HW):
        assert lab is None or lab.shape == (h, w), (lab.shape, (h, w))
    ph, pw = panel_size(h, w)
    panels = [Image.fromarray(image_HW3).resize((pw, ph), Image.Resampling.BILINEAR)]
    panels += [
        Image.fromarray(table.colorize(lab)).resize((pw, ph), Image.Resampling.NEAREST)
        for lab in (pred_HW, gt_HW)
        if lab is not None
    ]
    width = len(panels) * pw + (len(panels) - 1) * GAP
    fnt = font()
    classes = present_classes(pred_HW, gt_HW)
    n_rows = len(legend_rows(classes, width, fnt, table))
    canvas = Image.new("RGB", (width, TITLE_H + ph + n_rows * LEGEND_ROW_H), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for k, panel in enumerate(panels):
        x = k * (pw + GAP)
        canvas.paste(panel, (x, TITLE_H))
        draw.text((x + 4, 3), titles[k], fill=TEXT, font=fnt)
    draw_legend(draw, classes, TITLE_H + ph, width, fnt, table)
    return canvas


def robust_normalise(x_NC: np.ndarray) -> np.ndarray:
    """Per channel: subtract the median, divide by the interquartile range (floored)."""
    med = np.median(x_NC, axis=0)
    q1, q3 = np.percentile(x_NC, [25, 75], axis=0)
    return (x_NC - med) / np.maximum(q3 - q1, 1e-3)


def pca_rgb(feats_SChw: np.ndarray) -> np.ndarray:
    """[S, C, h, w] features -> [S, h, w, 3] float in [0, 1] (3 principal components)."""
    S, C, h, w = feats_SChw.shape
    x_NC = robust_normalise(feats_SChw.astype(np.float32).transpose(0, 2, 3, 1).reshape(-1, C))
    x_NC -= x_NC.mean(axis=0)
    _, vecs = np.linalg.eigh(x_NC.T @ x_NC)  # ascending eigenvalues
    comps_C3 = vecs[:, ::-1][:, :3]
    if comps_C3.shape[1] < 3:  # fewer than 3 channels: pad with zeros
        comps_C3 = np.pad(comps_C3, ((0, 0), (0, 3 - comps_C3.shape[1])))
    y_N3 = x_NC @ comps_C3
    y_N3 *= np.where(np.mean(y_N3**3, axis=0) < 0, -1, 1)  # a fixed sign: positive skew
    lo, hi = np.percentile(y_N3, [1, 99], axis=0)
    y_N3 = np.clip((y_N3 - lo) / np.maximum(hi - lo, 1e-6), 0, 1)
    return y_N3.reshape(S, h, w, 3)


def prediction_grid(
    rows: Mapping[str, Sequence[tuple[np.ndarray, np.ndarray, np.ndarray | None]]], cell_h: int = 128
) -> Image.Image:
    """One row per target domain: (image over prediction over ground truth) per sample.

    rows: {target name: [(image_HW3, pred_HW, gt_HW | None), ...]}. Each sample is a column of
    cell_h-tall tiles (width by its aspect); the target's name heads its row; one legend of every
    class shown closes the picture.
    """
    assert rows and all(rows.values()), "prediction_grid needs at least one sample per row"
    fnt = font()
    blocks = []  # per target: a picture of its samples
    all_labels = []
    for name, samples in rows.items():
        tiles_w = [max(1, round(img.shape[1] * cell_h / img.shape[0])) for img, _, _ in samples]
        n_tiles = max(2 + (gt is not None) for _, _, gt in samples)
        block = Image.new(
            "RGB", (sum(tiles_w) + GAP * (len(samples) - 1), TITLE_H + n_tiles * (cell_h + GAP)), BACKGROUND
        )
        ImageDraw.Draw(block).text((4, 3), name, fill=TEXT, font=fnt)
        x = 0
        for (img, pred, gt), tw in zip(samples, tiles_w):
            pics = [Image.fromarray(img).resize((tw, cell_h), Image.Resampling.BILINEAR)]
            pics += [
                Image.fromarray(colorize(lab)).resize((tw, cell_h), Image.Resampling.NEAREST)
                for lab in (pred, gt)
                if lab is not None
            ]
            for k, pic in enumerate(pics):
                block.paste(pic, (x, TITLE_H + k * (cell_h + GAP)))
            x += tw + GAP
            all_labels += [pred, gt]
        blocks.append(block)
    width = max(b.width for b in blocks)
    classes = present_classes(*all_labels)
    n_rows = len(legend_rows(classes, width, fnt))
    canvas = Image.new("RGB", (width, sum(b.height for b in blocks) + n_rows * LEGEND_ROW_H), BACKGROUND)
    y = 0
    for b in blocks:
        canvas.paste(b, (0, y))
        y += b.height
    draw_legend(ImageDraw.Draw(canvas), classes, y, width, fnt)
    return canvas


def image_rows(rows: Mapping[str, Sequence[np.ndarray]], cell_h: int = 128) -> Image.Image:
    """Titled rows of RGB images (e.g. inputs over their reconstructions, or generated samples), each
    image scaled to cell_h pixels tall."""
    assert rows and all(rows.values()), "image_rows needs at least one image per row"
    fnt = font()
    blocks = []
    for name, images in rows.items():
        pics = [
            Image.fromarray(img).resize(
                (max(1, round(img.shape[1] * cell_h / img.shape[0])), cell_h), Image.Resampling.BILINEAR
            )
            for img in images
        ]
        block = Image.new("RGB", (sum(p.width for p in pics) + GAP * (len(pics) - 1), TITLE_H + cell_h), BACKGROUND)
        ImageDraw.Draw(block).text((4, 3), name, fill=TEXT, font=fnt)
        x = 0
        for pic in pics:
            block.paste(pic, (x, TITLE_H))
            x += pic.width + GAP
        blocks.append(block)
    canvas = Image.new("RGB", (max(b.width for b in blocks), sum(b.height + GAP for b in blocks)), BACKGROUND)
    y = 0
    for b in blocks:
        canvas.paste(b, (0, y))
        y += b.height + GAP
    return canvas


def ablation_chart(
    path: Path,
    cells: list[str],
    targets: list[str],
    miou: np.ndarray,
    reference: dict[str, float] | None = None,
    title: str = "Ablation (mIoU %)",
    split_after: int | None = None,
) -> None:
    """Horizontal grouped bars: one group per cell (top to bottom in the given order), one bar per
    target; NaN cells (not applicable / failed) are marked "n/a". Paper reference values (%)
    are drawn as black diamonds; a dashed line follows the first `split_after` cells (Table IV).
    miou: [n_cells, n_targets] in percent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    miou = np.asarray(miou, dtype=float).reshape(len(cells), len(targets))
    n_t = len(targets)
    bar_h = 0.8 / n_t
    fig_h = 1.2 + 0.28 * len(cells) * max(1.5, n_t * 0.7)
    fig, ax = plt.subplots(figsize=(9, fig_h), dpi=100)
    y0 = np.arange(len(cells))[::-1].astype(float)
    for k, target in enumerate(targets):
        ys = y0 + 0.4 - bar_h * (k + 0.5)
        vals = np.nan_to_num(miou[:, k], nan=0.0)
        bars = ax.barh(ys, vals, height=bar_h * 0.95, label=target)
        for y, v, _bar in zip(ys, miou[:, k], bars):
            ax.text(
                (0 if math.isnan(v) else v) + 0.5, y, "n/a" if math.isnan(v) else f"{v:.1f}", va="center", fontsize=7
            )
    if reference:
        ref_y = [y for y, c in zip(y0, cells) if c in reference]
        ref_v = [reference[c] for c in cells if c in reference]
        ax.scatter(ref_v, ref_y, marker="D", color="black", zorder=3, s=18, label="paper (GTAV->CS)")
    if split_after and split_after < len(cells):
        ax.axhline(y0[split_after - 1] - 0.5, color="grey", linestyle="--", linewidth=0.8)
    ax.set_yticks(y0)
    ax.set_yticklabels(cells, fontsize=9)
    finite = miou[np.isfinite(miou)]
    top = max([1.0, *finite.tolist(), *(reference or {}).values()])
    ax.set_xlim(0, min(100.0, top * 1.15 + 2))
    ax.set_xlabel("mIoU (%)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(Path(path))
    plt.close(fig)


def confusion_png(matrix_KK: np.ndarray, title: str, class_names: Sequence[str] = CLASS_NAMES) -> bytes:
    """PNG bytes of a confusion matrix (ground-truth rows, prediction columns) with each row normalised
    to sum 1 (the share of a class's pixels predicted as each class; rows of absent classes stay 0)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mat = np.asarray(matrix_KK, dtype=np.float64)
    rows = mat.sum(1, keepdims=True)
    share = np.divide(mat, rows, out=np.zeros_like(mat), where=rows > 0)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(2.5 + 0.38 * k, 2 + 0.36 * k), dpi=100)
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for (r, c), v in np.ndenumerate(share):
        if v >= 0.005:
            ax.text(c, r, f"{100 * v:.0f}", ha="center", va="center", fontsize=6, color="white" if v > 0.5 else "black")
    ax.set_xticks(range(k))
    ax.set_xticklabels(class_names, rotation=90, fontsize=8)
    ax.set_yticks(range(k))
    ax.set_yticklabels(class_names, fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.04, label="share of the class's pixels")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
