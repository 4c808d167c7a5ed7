"""`diffseg.Segmenter`: a trained run as a Python callable, with the numbers of `diffseg predict`.

    segmenter = diffseg.Segmenter.from_run("runs/my-run", device="cpu")
    classes_HW = segmenter(image_HW3)            # uint8 train ids at the image's size
    maps = segmenter([image_a, image_b])         # a list in, a list out

Each image goes through exactly `predict`'s path (job.predict_image: the online uncond
trajectory at the aspect-preserving size, the run's head, bilinear upsampling, argmax). The
trajectory's noise is seeded by the sample id, which `predict` takes from the file name: give
the same `names` to get the same maps as `predict` on files of those stems.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from diffseg.core.errors import DiffsegError
from diffseg.stages.device import autocast_dtype, resolve_device
from diffseg.stages.predict.job import area_budget, aspect_size, check_resolution, load_predictor, predict_image
from diffseg.stages.runs.record import extract_config, read_run

DEFAULT_NAME = "image"  # the sample id of an image given without a name (predict's id of image.png)


class Segmenter:
    """A run's model: call it on RGB uint8 arrays [H, W, 3] to get class-id maps [H, W] (numpy uint8)."""

    def __init__(self, extractor, segmentor, budget: tuple[int, int], resolution: tuple[int, int] | None, device):
        self.extractor, self.segmentor, self.budget, self.resolution = extractor, segmentor, budget, resolution
        self.device = device
        self.amp = autocast_dtype(torch.device(device))

    @classmethod
    def from_run(
        cls,
        run: str | Path,
        device: str = "auto",
        *,
        model: str | None = None,
        resolution: tuple[int, int] | None = None,
    ) -> Segmenter:
        """Load a run (its final weights, else its newest sound checkpoint) and the frozen diffusion
        model its features came from. `model` and `resolution` (W, H) are `predict`'s --model and
        --resolution: not given, the run's model and the aspect-preserving size of its evaluation area."""
        record = read_run(Path(run))
        dev = resolve_device(device).type
        extractor, segmentor = load_predictor(record, extract_config(record), model, dev)
        return cls(extractor, segmentor, area_budget(record), check_resolution(resolution), dev)

    def __call__(
        self, images: np.ndarray | Sequence[np.ndarray], names: str | Sequence[str] | None = None
    ) -> np.ndarray | list[np.ndarray]:
        """Class-id maps of one image [H, W, 3] (a map) or a list of images (a list of maps, in order).
        `names`: the sample ids seeding the noise (predict's file stems); not given, "image" for each."""
        single = isinstance(images, np.ndarray)
        batch = [images] if single else list(images)
        ids = [names] if isinstance(names, str) else list(names or [DEFAULT_NAME] * len(batch))
        if len(ids) != len(batch):
            raise DiffsegError(f"{len(batch)} images but {len(ids)} names")
        maps = [self._one(_checked(image, k), name) for k, (image, name) in enumerate(zip(batch, ids))]
        return maps[0] if single else maps

    def _one(self, image_HW3: np.ndarray, name: str) -> np.ndarray:
        size = self.resolution or aspect_size(image_HW3.shape[1::-1], self.budget)
        return predict_image(self.extractor, self.segmentor, image_HW3, size, name, self.device, self.amp)


def _checked(image, k: int) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise DiffsegError(f"image {k}: expected an RGB uint8 array [H, W, 3], got {got}")
    return np.ascontiguousarray(image)
