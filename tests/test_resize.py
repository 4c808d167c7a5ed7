"""One resize for every network input (mmcv's: OpenCV INTER_LINEAR images, nearest labels) and
predict's size rule (the input's aspect ratio within an area budget, multiples of 64)."""

import numpy as np
import pytest

from diffseg.stages.extract.views import eval_image, resize_image, resize_label
from diffseg.stages.predict.job import aspect_size


@pytest.mark.parametrize(
    "image_wh, budget, want",
    [
        ((2048, 1024), (1024, 512), (1024, 512)),  # 2:1 keeps the budget itself
        ((640, 480), (1024, 512), (832, 640)),  # 4:3: ideal 836.1 x 627.1
        ((500, 500), (1024, 512), (704, 704)),  # 1:1: ideal 724.1
        ((1280, 720), (1024, 512), (960, 512)),  # BDD's 16:9: ideal 965.4 x 543.1
        ((1000, 10), (128, 64), (896, 64)),  # a strip: no side below 64
    ],
)
def test_aspect_size(image_wh, budget, want):
    assert aspect_size(image_wh, budget) == want


def test_image_resize_is_opencv_bilinear_without_antialiasing():
    # a 4-pixel row 0, 100, 200, 0 halved: INTER_LINEAR samples at source x = 0.5 and 2.5, i.e.
    # the means of pixel pairs (50, 100); Pillow's antialiased bilinear mixes more neighbours
    row = np.array([0, 100, 200, 0], np.uint8)
    img = np.repeat(np.repeat(row[None, :, None], 3, axis=2), 2, axis=0)  # [2, 4, 3]
    out = resize_image(img, (2, 1))
    assert out.shape == (1, 2, 3) and out[0, :, 0].tolist() == [50, 100]
    # doubling: INTER_LINEAR with half-pixel centres, 0 and 100 -> 0, 25, 75, 100
    two = np.repeat(np.array([[0, 100]], np.uint8)[..., None], 3, axis=2)
    assert resize_image(two, (4, 1))[0, :, 0].tolist() == [0, 25, 75, 100]
    assert resize_image(img, (4, 2)) is img  # same size: unchanged
    assert eval_image(img, (2, 1)).tolist() == out.tolist()


def test_label_resize_is_nearest():
    lab = np.array([[1, 2, 3, 4]], np.uint8)
    assert resize_label(lab, (2, 1)).tolist() == [[1, 3]]
    assert set(np.unique(resize_label(lab, (7, 3)))) <= {1, 2, 3, 4}
