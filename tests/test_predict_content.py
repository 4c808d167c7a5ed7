"""Features depend on the image, not its name (docs/design/method.md §2, determinism): `diffseg predict` on
the same pixels under two file names, and on an evaluation cache's image, gives the same masks.

The trajectory here has eta noise (t = 20 -> 40 lies inside the eta window), so a seed taken
from the name would change the features; the demo frames are 2:1 (128x64), the evaluation
cache's resolution, which predict's aspect rule gives back for that budget.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import PREDICT_TRAIN
from PIL import Image
from typer.testing import CliRunner

from diffseg.cache import CacheReader
from diffseg.cli import app
from diffseg.data import open_dataset
from diffseg.stages.runs.record import load_segmentor, read_run
from diffseg.stages.train import job as train

RUNNER = CliRunner()
LAYERS = PREDICT_TRAIN["layers"]
SIZE = (128, 64)  # (W, H)


def _extract(out: Path, split: str, *extra):
    args = ["extract", "--dataset", "demo", "--split", split, "--model", "tiny", "--steps", "0,20,40"]
    args += ["--save-steps", "40", "--resolution", "128x64", "--limit", "1", "--out", str(out), "--device", "cpu"]
    res = RUNNER.invoke(app, [*args, *extra])
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("content")
    _extract(root / "train", "train", "--branches", "uncond")
    _extract(root / "val", "val")
    run = train.main(
        cache=root / "train",
        out=root / "run",
        **PREDICT_TRAIN,
        eval_caches=(str(root / "val"),),
    )
    return root, run


def _predict(run, *args):
    res = RUNNER.invoke(app, ["predict", "--run", str(run), "--device", "cpu", *args])
    assert res.exit_code == 0, res.output
    return res


def test_same_image_under_two_names_gives_identical_masks(run_dir, tmp_path):
    _, run = run_dir
    image = open_dataset("demo", split="val", demo_size=SIZE).load(0).image
    Image.fromarray(image).save(tmp_path / "first.png")
    Image.fromarray(image).save(tmp_path / "second-name.png")
    _predict(run, str(tmp_path / "first.png"), str(tmp_path / "second-name.png"), "--out", str(tmp_path / "o"))
    a = (tmp_path / "o" / "first.png").read_bytes()
    assert a == (tmp_path / "o" / "second-name.png").read_bytes()


def test_predict_equals_eval_on_the_eval_caches_image(run_dir, tmp_path):
    """No --resolution: the run's first evaluation cache (128x64) is the budget, and a 2:1 input keeps it."""
    root, run = run_dir
    image = open_dataset("demo", split="val", demo_size=SIZE).load(0).image
    assert image.shape[1::-1] == SIZE
    Image.fromarray(image).save(tmp_path / "any-file-name.png")
    _predict(run, str(tmp_path / "any-file-name.png"), "--out", str(tmp_path / "out"))
    mask = np.asarray(Image.open(tmp_path / "out" / "any-file-name.png"))
    reader = CacheReader(root / "val")
    assert reader.record.resolution == SIZE and reader.ids[0] != "any-file-name"
    feats = reader.read(0, [f"uncond/{l}" for l in LAYERS])
    model, _ = load_segmentor(read_run(run), "cpu")
    with torch.no_grad():
        logits = model({l: torch.from_numpy(feats[f"uncond/{l}"])[None].float() for l in LAYERS})
    up = torch.nn.functional.interpolate(logits, size=SIZE[::-1], mode="bilinear", align_corners=False)
    np.testing.assert_array_equal(mask, up.argmax(1)[0].numpy())


def test_budget_is_the_runs_first_eval_cache_and_survives_its_removal(run_dir, tmp_path):
    from diffseg.stages.predict.job import DEFAULT_RESOLUTION, area_budget

    root, run = run_dir
    record = read_run(run)
    assert area_budget(record) == SIZE
    moved = root / "val-moved"
    (root / "val").rename(moved)
    try:
        assert area_budget(record) == DEFAULT_RESOLUTION  # with a warning naming the cache
    finally:
        moved.rename(root / "val")
