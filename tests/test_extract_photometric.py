"""mmseg's PhotoMetricDistortion on training views: each operation against a pixel computed by
hand from mmseg's definitions, its order and probabilities, and its place in the views."""

import numpy as np
import pytest
import torch

from diffseg.stages.extract import photometric as pm
from diffseg.stages.extract.views import train_view

PIXEL = np.array([[[200, 100, 50]]], np.uint8)  # RGB; OpenCV 8-bit HSV: H 10 (20 deg), S 191, V 200


@pytest.mark.parametrize(
    "draw, want",
    [
        # brightness: uint8(clip(x + beta)): 200 + 10.7 = 210.7 -> 210 (truncation)
        (pm.Draw(brightness=10.7), [210, 110, 60]),
        (pm.Draw(brightness=-30.5), [169, 69, 19]),  # 19.5 -> 19
        (pm.Draw(brightness=60.0), [255, 160, 110]),  # 260 clipped to 255
        # contrast: uint8(clip(x * alpha)): 300 -> 255, 150, 75
        (pm.Draw(contrast=1.5), [255, 150, 75]),
        (pm.Draw(contrast=0.75), [150, 75, 37]),  # 37.5 -> 37
        # saturation 0.5: S 191 -> 95 (95.5 truncated); HSV (10, 95, 200) back to RGB in sector 0
        # (f = 1/3): R = V = 200, B = V (1 - s) = 200 * 160/255 = 125.5 -> 125,
        # G = V (1 - s (1 - f)) = 200 (1 - 95/255 * 2/3) = 150.3 -> 150
        (pm.Draw(saturation=0.5), [200, 150, 125]),
        # hue +18: H 10 -> 28 (56 deg, f = 14/15): R = 200, G = 200 (1 - 191/255 / 15) = 190.0,
        # B = 200 (1 - 191/255) = 50.2 -> 50
        (pm.Draw(hue=18), [200, 190, 50]),
        # hue -18: H (10 - 18) % 180 = 172 (344 deg, sector 5, f = 11/15): R = 200, G = 50.2 -> 50,
        # B = 200 (1 - 191/255 * 11/15) = 90.1 -> 90
        (pm.Draw(hue=-18), [200, 50, 90]),
    ],
)
def test_each_operation_on_a_hand_computed_pixel(draw, want):
    assert pm.distort(PIXEL, draw)[0, 0].tolist() == want


def test_contrast_before_or_after_the_hsv_operations():
    # saturation 0.5 gives (200, 150, 125); contrast 1.5 after it: 300 -> 255, 225, 187.5 -> 187
    first = pm.distort(PIXEL, pm.Draw(contrast=1.5, saturation=0.5, contrast_first=True))
    last = pm.distort(PIXEL, pm.Draw(contrast=1.5, saturation=0.5, contrast_first=False))
    assert last[0, 0].tolist() == [255, 225, 187]  # 300 -> 255, 225, 187.5 -> 187
    assert first[0, 0].tolist() != last[0, 0].tolist()
    assert PIXEL[0, 0].tolist() == [200, 100, 50]  # the input is never modified


def test_draws_follow_mmsegs_probabilities_and_ranges():
    gen = torch.Generator().manual_seed(0)
    draws = [pm.draw(gen) for _ in range(4000)]
    for name in ("brightness", "contrast", "saturation", "hue"):
        share = np.mean([getattr(d, name) is not None for d in draws])
        assert abs(share - 0.5) < 0.03, (name, share)
    assert abs(np.mean([d.contrast_first for d in draws]) - 0.5) < 0.03
    assert all(-32 <= d.brightness <= 32 for d in draws if d.brightness is not None)
    assert all(0.5 <= d.contrast <= 1.5 for d in draws if d.contrast is not None)
    hues = {d.hue for d in draws if d.hue is not None}
    assert hues == set(range(-18, 18))  # numpy's randint(-18, 18): 18 itself never drawn
    assert pm.draw(torch.Generator().manual_seed(5)) == pm.draw(torch.Generator().manual_seed(5))


def test_train_view_distorts_after_the_crop_and_keeps_the_crop_draws():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    label = rng.integers(0, 3, (96, 128), dtype=np.uint8)

    def view(photo_seed):
        photo = None if photo_seed is None else torch.Generator().manual_seed(photo_seed)
        return train_view("s", image, label, (128, 96), (64, 64), torch.Generator().manual_seed(1), photo)

    plain, lab = view(None)
    for seed in range(4):
        d = pm.draw(torch.Generator().manual_seed(seed))
        img, lab2 = view(seed)
        assert np.array_equal(lab2, lab)  # same crop and flip
        assert np.array_equal(img, pm.distort(plain, d))
