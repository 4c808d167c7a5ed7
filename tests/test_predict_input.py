"""`diffseg predict` feeds the VAE exactly what an evaluation cache feeds it for the same image and
resolution (one resize function: no train/inference skew). No model: the extractor and the
segmentor are stand-ins that record their input."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from diffseg.data import open_dataset
from diffseg.pipeline.encode import to_pixels
from diffseg.stages.extract.config import ExtractConfig
from diffseg.stages.extract.plan import build_plan
from diffseg.stages.extract.worker import SampleRunner
from diffseg.stages.predict.job import network_input, predict_image


class _RecordingExtractor:
    def __init__(self):
        self.images = []

    def uncond_batch(self, images, sample_ids):
        self.images.extend(images)
        b, h, w = images.shape[:3]
        return {"up1.res2": np.zeros((b, 1, 4, h // 8, w // 8), np.float16)}


def _segmentor(feats_BSChw):
    (f,) = feats_BSChw.values()
    return torch.zeros(f.shape[0], 19, *f.shape[-2:])


def _vae_input(image_HW3):
    return to_pixels(image_HW3[None], "cpu", torch.float32)


@pytest.mark.parametrize(
    "image_wh,resolution",
    [((100, 70), (64, 64)), ((40, 30), (128, 64)), ((333, 250), (192, 128)), ((128, 64), (128, 64))],
)
def test_predict_feeds_the_vae_what_an_eval_cache_feeds_it(image_wh, resolution):
    dataset = open_dataset("demo", split="val", demo_size=image_wh)
    plan = build_plan(ExtractConfig(dataset="demo", split="val", resolution=resolution, model="tiny", device="cpu"))
    ids = [dataset.ids[0]]
    runner = SampleRunner(plan, models=None, writer=SimpleNamespace(ids=ids), dataset=dataset, extractor=object())
    sid, cache_image, _, _ = runner.view(0)  # what the evaluation cache's worker gives the extractor

    sample = dataset.load(0)
    assert sample.image.shape[1::-1] == image_wh
    recorder = _RecordingExtractor()
    mask = predict_image(recorder, _segmentor, sample.image, resolution, sid, "cpu")
    assert mask.shape == sample.image.shape[:2]
    (predict_input,) = recorder.images
    np.testing.assert_array_equal(predict_input, network_input(sample.image, resolution))

    cached, predicted = _vae_input(cache_image), _vae_input(predict_input)
    assert cached.shape == (1, 3, resolution[1], resolution[0])
    assert cached.dtype == predicted.dtype == torch.float32
    assert cached.numpy().tobytes() == predicted.numpy().tobytes()
