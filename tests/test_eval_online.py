"""`diffseg eval --dataset`: online evaluation through predict's arithmetic (predict/online.py), the
protocols (whole, slide, flip, scales) and the files every evaluation writes (report, confusion matrix).

The run and the evaluation cache are real: the tiny model on the demo set at 64x64, one-step
trajectory (as tests/test_predict_run.py). The protocol arithmetic is also checked with stand-ins:
a pointwise model, equivariant to translation and mirroring, gives the same logits however the
image is cut into windows or flipped.
"""

import json

import numpy as np
import pytest
import torch
from helpers import PREDICT_TRAIN
from typer.testing import CliRunner

from diffseg.cli import app
from diffseg.data import open_dataset
from diffseg.nn.metrics import scores
from diffseg.stages.evaluate import squeezed
from diffseg.stages.predict.job import build_extractor, load_frozen
from diffseg.stages.predict.online import Protocol, image_logits, windows
from diffseg.stages.runs.record import extract_config, load_segmentor, read_run
from diffseg.stages.train import job as train

RUNNER = CliRunner()


def _invoke(*args):
    return RUNNER.invoke(app, [*map(str, args)])


def _extract(out, split, limit, *extra):
    res = _invoke(
        "extract", "--dataset", "demo", "--split", split, "--model", "tiny", "--preset", "1step",
        "--resolution", "64x64", "--limit", limit, "--out", out, "--device", "cpu", *extra,
    )  # fmt: skip
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("online")
    _extract(root / "train", "train", 1, "--branches", "uncond")
    _extract(root / "val", "val", 2)
    run = train.main(cache=root / "train", out=root / "run", **PREDICT_TRAIN)
    return root, run


def _eval_json(run, *args):
    res = _invoke("eval", "--run", run, "--json", "--device", "cpu", *args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _matrix(run, target):
    return np.load(run / "eval" / target / "confusion_matrix.npy")


def test_online_whole_at_the_cache_resolution_equals_cached_evaluation(setup):
    root, run = setup
    cached = _eval_json(run, "--cache", root / "val")
    online = _eval_json(run, "--dataset", "demo", "--split", "val", "--resolution", "64x64", "--limit", 2)
    assert online["target"] == "demo-val-online-whole" and online["samples"] == cached["samples"] == 2
    assert online["online"]["resolution"] == [64, 64] and cached["squeezed"] == 0
    np.testing.assert_array_equal(_matrix(run, "demo-val-online-whole"), _matrix(run, "val"))
    for key in ("miou", "aAcc", "mAcc"):
        assert online[key] == pytest.approx(cached[key])


def test_confusion_matrix_file_equals_the_report(setup):
    root, run = setup
    report = _eval_json(run, "--cache", root / "val")
    mat = _matrix(run, "val")
    assert mat.dtype == np.int64 and mat.shape == (19, 19)
    assert int(mat.sum()) == 2 * 64 * 64  # every demo pixel is labelled
    assert int(np.trace(mat)) == round(report["aAcc"] * mat.sum())
    assert {k: report[k] for k in scores(mat)} == scores(mat)
    tp, union = np.diag(mat), mat.sum(0) + mat.sum(1) - np.diag(mat)
    assert report["miou"] == pytest.approx(np.mean(tp[union > 0] / union[union > 0]))
    assert set(report["per_class_acc"]) == set(report["per_class_iou"]) and "road" in report["per_class_acc"]
    assert (run / "eval" / "val" / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _frozen(run):
    record = read_run(run)
    extractor = build_extractor(record, extract_config(record), load_frozen(record, None, "cpu"))
    return extractor, load_segmentor(record, "cpu")[0]


def test_slide_with_one_window_covering_the_image_equals_whole(setup):
    _, run = setup
    extractor, segmentor = _frozen(run)
    image = open_dataset("demo", split="val", demo_size=(128, 64)).load(0).image
    args = (extractor, segmentor, image, [(128, 64)], (64, 128), "s", "cpu")
    whole = image_logits(*args)
    for crop in ((128, 64), (192, 128)):  # a window larger than the image is cut to it
        slide = image_logits(*args, protocol=Protocol(mode="slide", crop=crop))
        torch.testing.assert_close(slide, whole, rtol=0, atol=1e-6)
    several = image_logits(*args, protocol=Protocol(mode="slide", crop=(64, 64), stride=(64, 64)))
    assert not torch.allclose(several, whole)  # two windows: each its own U-Net context


class _Pointwise:
    """Extractor + segmentor stand-ins: the features at a cell are the mean colour of its 8x8 pixels,
    the logits a fixed linear map of them (equivariant to translation by 8 px and to mirroring)."""

    def __init__(self):
        self.calls = []
        self.weight = torch.randn(19, 3, generator=torch.Generator().manual_seed(0))

    def uncond_batch(self, images, sample_ids):
        self.calls.append(images.shape)
        b, h, w, _ = images.shape
        cells = images.reshape(b, h // 8, 8, w // 8, 8, 3).mean((2, 4)) / 255
        return {"f": cells.transpose(0, 3, 1, 2)[:, None].astype(np.float16)}

    def __call__(self, feats):
        return torch.einsum("kc,bchw->bkhw", self.weight, feats["f"][:, 0])


def test_overlapping_windows_and_flip_average_to_whole_for_an_equivariant_model():
    image = np.random.default_rng(0).integers(0, 255, (96, 200, 3), dtype=np.uint8)
    model = _Pointwise()
    args = (model, model, image, [(256, 128)], (96, 200), "s", "cpu")
    whole = image_logits(*args)
    slide = image_logits(*args, protocol=Protocol(mode="slide", crop=(128, 128), stride=(64, 64), batch=2))
    torch.testing.assert_close(slide, whole, rtol=0, atol=1e-5)
    assert model.calls[1:] == [(2, 128, 128, 3), (1, 128, 128, 3)]  # 3 windows, 2 per U-Net call
    flipped = image_logits(*args, protocol=Protocol(flip=True))
    torch.testing.assert_close(flipped, whole.softmax(0), rtol=0, atol=1e-5)  # mirrored back: the same
    assert model.calls[-1] == (2, 128, 256, 3)  # the image and its mirror in one call


def test_flip_averages_the_mirrored_prediction_back_in_place():
    """A model that sees only the column: without mirroring back, flip would average two different maps."""
    model = _Pointwise()
    ramp = np.repeat(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], 64, 0).repeat(3, 2)
    args = (model, model, ramp, [(64, 64)], (64, 64), "s", "cpu")
    whole = image_logits(*args).softmax(0)
    flipped = image_logits(*args, protocol=Protocol(flip=True))
    torch.testing.assert_close(flipped, whole, rtol=0, atol=1e-5)


def test_windows_follow_mmseg():
    assert windows((128, 64), (64, 64), (48, 64)) == [(0, 0, 64, 64), (48, 0, 112, 64), (64, 0, 128, 64)]
    assert windows((64, 64), (128, 128), (64, 64)) == [(0, 0, 64, 64)]


def test_squeezed_counts_aspect_changes_over_one_percent():
    assert squeezed([(512, 1024), (600, 800), (513, 1024)], (1024, 512)) == 1


def test_protocol_errors_are_one_line(setup):
    root, run = setup
    for args, words in (
        (["--cache", root / "val", "--dataset", "demo"], "not both"),
        ([], "either --cache"),
        (["--cache", root / "val", "--flip"], "--flip"),
        (["--dataset", "demo", "--mode", "slide"], "--crop"),
        (["--dataset", "demo", "--mode", "tiles"], "whole, slide"),
        (["--dataset", "demo", "--scales", "1,-1"], "positive"),
    ):
        res = _invoke("eval", "--run", run, "--device", "cpu", *args)
        assert res.exit_code == 1 and words in res.output, (args, res.output)
        assert len(res.output.strip().splitlines()) == 1
