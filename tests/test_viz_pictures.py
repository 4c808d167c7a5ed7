"""diffseg.stages.viz: palette masks keep train ids; composite pictures have the documented sizes."""

import numpy as np
from PIL import Image

from diffseg.core.classes import PALETTE
from diffseg.stages import viz


def _label(h, w, ids=(0, 2, 10, 13)):
    lab = np.zeros((h, w), np.uint8)
    for k, c in enumerate(ids):
        lab[:, k * w // len(ids) :] = c
    lab[0, 0] = 255
    return lab


def test_palette_png_keeps_indices_and_colours(tmp_path):
    lab = _label(37, 53)
    viz.save_mask(tmp_path / "m.png", lab)
    img = Image.open(tmp_path / "m.png")
    assert img.mode == "P" and img.size == (53, 37)
    np.testing.assert_array_equal(np.asarray(img), lab)
    rgb = np.asarray(img.convert("RGB"))
    np.testing.assert_array_equal(rgb[5, -1], PALETTE[13])
    np.testing.assert_array_equal(rgb[0, 0], [0, 0, 0])  # ignore is black


def test_panel_size_enlarges_small_and_shrinks_large():
    assert viz.panel_size(64, 96) == (256, 384)
    assert viz.panel_size(1024, 2048) == (512, 1024)
    assert viz.panel_size(300, 500) == (300, 500)


def test_side_by_side_size_two_and_three_panels():
    img = np.full((64, 96, 3), 128, np.uint8)
    lab = _label(64, 96)
    ph, pw = viz.panel_size(64, 96)
    two = viz.side_by_side(img, lab)
    three = viz.side_by_side(img, lab, lab)
    rows = len(viz.legend_rows(viz.present_classes(lab), 3 * pw + 2 * viz.GAP))
    assert two.size[0] == 2 * pw + viz.GAP
    assert three.size == (3 * pw + 2 * viz.GAP, viz.TITLE_H + ph + rows * viz.LEGEND_ROW_H)
    # the prediction panel shows the palette colour of its class (nearest resize)
    px = np.asarray(three)[viz.TITLE_H + ph // 2, pw + viz.GAP + 2]
    np.testing.assert_array_equal(px, PALETTE[0])


def test_present_classes_ignores_255():
    assert viz.present_classes(_label(4, 8, (1, 5)), None) == [1, 5]


def test_prediction_grid_has_one_block_per_target():
    img = np.zeros((32, 64, 3), np.uint8)
    lab = _label(32, 64)
    grid = viz.prediction_grid({"a": [(img, lab, lab), (img, lab, None)], "b": [(img, lab, None)]}, cell_h=50)
    block_a = viz.TITLE_H + 3 * (50 + viz.GAP)
    block_b = viz.TITLE_H + 2 * (50 + viz.GAP)
    assert grid.size[0] == 2 * 100 + viz.GAP
    assert grid.size[1] >= block_a + block_b + viz.LEGEND_ROW_H


def test_ablation_chart_writes_png_with_nan_cells(tmp_path):
    miou = np.array([[40.0, 30.0], [np.nan, np.nan]])
    viz.ablation_chart(
        tmp_path / "c.png", ["baseline", "kinds-res+blk+xattn"], ["t1", "t2"], miou, reference={"baseline": 49.72}
    )
    img = Image.open(tmp_path / "c.png")
    assert img.size[0] == 900 and img.size[1] > 100
