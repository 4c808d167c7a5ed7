"""Unlabelled pre-training images of the demo world, for the built-in `mini` model.

The same scenes as the demo dataset (scene.py) in more styles than it evaluates on:
the demo's `source`, `night` and `fog`, plus `dusk` and `rain` added here, as Stable
Diffusion saw photos of every time of day and weather. The labels are returned only so
the caption can name the classes present (as alt-text would); pre-training never uses
them as masks.

Disjoint from evaluation by construction: demo sample i of split s is rendered from
`np.random.default_rng((seed, s, i))` with s a split index (< len(DEMO_SPLITS), the tuning
split `dev` included), while pre-training image i comes from
`default_rng((seed, PRETRAIN_STREAM, i))`. For seeds and
indices below 2**32 both are three-word entropies that differ in their second word, and
numpy's SeedSequence maps distinct entropies of at most four words to distinct states
(its mixing is a bijection), so no pre-training scene can equal an evaluation scene.
"""

from __future__ import annotations

import numpy as np

from diffseg.data.demo.canvas import Canvas
from diffseg.data.demo.scene import DROPPABLE, draw_scene
from diffseg.data.demo.style import render, smooth_noise

PRETRAIN_STREAM = 0x6D696E69  # "mini": far above any split index
PRETRAIN_STYLES = ("source", "night", "fog", "dusk", "rain")
_SKY, _ROAD = 10, 0


def pretrain_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of pre-training image `index` (see the module docstring)."""
    assert 0 <= seed < 2**32 and 0 <= index < 2**32, (seed, index)
    return np.random.default_rng((seed, PRETRAIN_STREAM, index))


def render_pretrain(
    seed: int, index: int, size: tuple[int, int] = (128, 128), zoom: float = 1.0, variety: float = 0.0
) -> tuple[np.ndarray, np.ndarray, str]:
    """(image uint8 [H, W, 3], label uint8 [H, W], style) of pre-training image `index`.

    Styles cycle with the index, so every style has the same share of any prefix. With
    `zoom` > 1, half the images (odd ones per style turn) are a random window of the same kind
    of scene rendered larger, by a factor log-uniform in [1, zoom]: a close-up shows fewer
    classes, so the caption's class list says which ones are there (a full 128 px scene shows
    about 12 of the 19, nearly the same ones every time, and a caption of them carries almost
    nothing the U-Net could not see). With `variety` > 0 each kind of scene.DROPPABLE
    (buildings, trees, walls, fences, each vehicle, people, riders, poles) is left out of the scene
    with that probability, so that which classes show varies from image to image. `zoom` = 1 and
    `variety` = 0 draw nothing extra: the images are unchanged.
    """
    w, h = size
    rng = pretrain_rng(seed, index)
    style = PRETRAIN_STYLES[index % len(PRETRAIN_STYLES)]
    z = 1.0
    if zoom > 1 and (index // len(PRETRAIN_STYLES)) % 2 == 1:
        z = float(np.exp(rng.uniform(0.0, np.log(zoom))))
    W, H = max(w, round(w * z)), max(h, round(h * z))
    drop = frozenset(k for k in DROPPABLE if rng.random() < variety) if variety > 0 else frozenset()
    canvas = draw_scene(rng, H, W, drop)
    if style in ("dusk", "rain"):
        image = _EXTRA[style](canvas, rng)
    else:
        image = render(canvas, rng, style)
    label = canvas.label
    if (w, h) != (W, H):
        y, x = int(rng.integers(H - h + 1)), int(rng.integers(W - w + 1))
        image, label = image[y : y + h, x : x + w], label[y : y + h, x : x + w]
    return np.ascontiguousarray(image), np.ascontiguousarray(label), style


def _dusk(cv: Canvas, rng: np.random.Generator) -> np.ndarray:
    """Low warm sun: an orange-to-violet sky, a dimmed warm scene, the first lamps glowing."""
    img = render(cv, rng, "source").astype(np.float32) / 255
    h, w = cv.shape
    img *= np.float32(rng.uniform(0.45, 0.7)) * np.array([1.15, 0.85, 0.65], np.float32)
    sky = cv.label == _SKY
    top = sky.argmax(0).min() if sky.any() else 0
    horizon = max(int(np.nonzero(sky.any(1))[0].max()) if sky.any() else 1, 1)
    f = np.clip((np.arange(h, dtype=np.float32)[:, None] - top) / max(horizon - top, 1), 0, 1)[..., None]
    glow = np.array([1.0, 0.55, 0.25], np.float32) * rng.uniform(0.8, 1.0)
    zenith = np.array([0.35, 0.25, 0.45], np.float32) * rng.uniform(0.7, 1.0)
    gradient = zenith * (1 - f) + glow * f  # [h, 1, 3]
    gradient = np.broadcast_to(gradient, (h, w, 3)) * (1 + 0.05 * smooth_noise(rng, h, w, 16))[..., None]
    img[sky] = gradient[sky]
    for x, y, _r, _ in cv.lights:  # lamps just switched on: small warm dots
        yy, xx = int(y), int(x)
        if 0 <= yy < h and 0 <= xx < w:
            img[max(yy - 1, 0) : yy + 2, max(xx - 1, 0) : xx + 2] += np.array([0.6, 0.45, 0.2], np.float32)
    return _to_uint8(img)


def _rain(cv: Canvas, rng: np.random.Generator) -> np.ndarray:
    """Overcast rain: grey, desaturated, light haze, a glossy road and falling streaks."""
    img = render(cv, rng, "source").astype(np.float32) / 255
    h, w = cv.shape
    grey = img.mean(-1, keepdims=True)
    img = 0.45 * img + 0.55 * grey  # overcast light flattens colours
    img *= np.float32(rng.uniform(0.55, 0.75)) * np.array([0.92, 0.97, 1.05], np.float32)
    t = np.exp(-rng.uniform(0.01, 0.025) * np.minimum(cv.depth, 500.0))[..., None]
    img = img * t + np.float32(rng.uniform(0.45, 0.6)) * (1 - t)
    img[cv.label == _SKY] = np.float32(rng.uniform(0.5, 0.62))
    road = cv.label == _ROAD
    img[road] *= 0.8  # wet asphalt is darker, with streaks of reflected sky
    img[road] += 0.12 * np.clip(smooth_noise(rng, h, w, 3), 0, None)[road][:, None]
    streaks = np.zeros((h, w), np.float32)  # short slanted streaks
    for _ in range(int(rng.integers(60, 140))):
        x, y, n = rng.uniform(0, w), rng.uniform(0, h), int(rng.integers(4, 10))
        ys = np.clip((y + np.arange(n)).astype(int), 0, h - 1)
        xs = np.clip((x + 0.3 * np.arange(n)).astype(int), 0, w - 1)
        streaks[ys, xs] = 1
    img += rng.uniform(0.12, 0.22) * streaks[..., None]
    return _to_uint8(img)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    np.clip(img, 0, 1, out=img)
    return (img * 255 + 0.5).astype(np.uint8)


_EXTRA = {"dusk": _dusk, "rain": _rain}
