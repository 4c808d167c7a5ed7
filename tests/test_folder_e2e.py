"""A dataset of one's own end to end: a generated 5-class `folder` dataset extracted (tiny model,
64x64, both branches: the masked prompts name its classes by their words), trained for two
iterations, scored from a cache and online, and predicted on, every output in its label space."""

import json
from pathlib import Path

import numpy as np
import pytest
from datagen import FOLDER_CLASSES, make_folder, save_grey
from helpers import PREDICT_TRAIN
from PIL import Image
from typer.testing import CliRunner

from diffseg.cache import CacheReader
from diffseg.cli import app
from diffseg.stages.runs.record import load_segmentor, read_run
from diffseg.stages.train import job as train

RUNNER = CliRunner()
NAMES = [c["name"] for c in FOLDER_CLASSES]


def _cli(*args):
    res = RUNNER.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def _extract(root: Path, split: str, out: Path, *extra):
    common = ("--model", "tiny", "--preset", "1step", "--resolution", "64x64", "--device", "cpu")
    return _cli("extract", "--dataset", "folder", "--root", root, "--split", split, "--out", out, *common, *extra)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("folder")
    data = tmp / "fields"
    make_folder(data, n=2, size=(64, 64), split="train", ignore=9)
    make_folder(data, n=1, size=(64, 64), split="val", seed=1, ignore=9)
    _extract(data, "train", tmp / "train", "--scale", "64x64", "--limit", "1")
    _extract(data, "val", tmp / "val")
    run = train.main(cache=tmp / "train", out=tmp / "run", eval_caches=[str(tmp / "val")], **PREDICT_TRAIN)
    return tmp, data, Path(run)


def test_the_caches_record_the_class_table_and_name_its_prompt_words(trained):
    tmp, _, _ = trained
    rec = CacheReader(tmp / "train").record
    assert rec.dataset.label_space == "custom" and rec.dataset.class_table.names == tuple(NAMES)
    assert rec.extract.class_prompts["crop row"] == "A high quality photo; rows of crops"
    labels = CacheReader(tmp / "val").orig_label(0)
    assert set(np.unique(labels).tolist()) <= {0, 1, 2, 3, 4, 255}  # the ignore value 9 read as 255


def test_the_run_is_five_classes_wide_and_scores_them_by_name(trained):
    tmp, _, run = trained
    record = read_run(run)
    model, _ = load_segmentor(record, "cpu")
    assert model.num_classes == 5 and record.class_table.names == tuple(NAMES)
    out = json.loads(_cli("eval", "--run", run, "--cache", tmp / "val", "--json", "--device", "cpu").stdout)
    assert list(out["per_class_iou"]) == NAMES and list(out["per_class_acc"]) == NAMES


def test_online_eval_and_predict_in_the_run_label_space(trained):
    tmp, data, run = trained
    online = _cli(
        "eval", "--run", run, "--dataset", "folder", "--root", data, "--split", "val",
        "--resolution", "64x64", "--json", "--device", "cpu",
    )  # fmt: skip
    assert list(json.loads(online.stdout)["per_class_iou"]) == NAMES
    out = tmp / "pred"
    _cli("predict", "--run", run, data / "images" / "val", "--labels", data / "labels" / "val",
         "--out", out, "--device", "cpu")  # fmt: skip
    mask = Image.open(out / "field_000.png")
    assert mask.mode == "P" and np.asarray(mask).max() < 5
    assert mask.getpalette()[3:6] == FOLDER_CLASSES[1]["color"]


def test_a_cache_of_another_label_space_is_refused(trained, tmp_path):
    _, _, run = trained
    demo = tmp_path / "demo-val"
    _cli("extract", "--dataset", "demo", "--split", "val", "--model", "tiny", "--preset", "1step",
         "--resolution", "64x64", "--limit", "1", "--out", demo, "--device", "cpu")  # fmt: skip
    res = RUNNER.invoke(app, ["eval", "--run", str(run), "--cache", str(demo), "--device", "cpu"])
    assert res.exit_code == 1 and "another label space" in res.output, res.output


def test_more_classes_than_cityscapes_and_a_bad_sample_skipped(tmp_path):
    """25 classes (ids beyond 18 in labels, masked prompts, class counts, cache verify), and a label
    holding an id the table lacks: a warning naming the file, the sample skipped, the rest extracted."""
    from diffseg.stages.train.classstats import count_classes

    classes = [{"id": i, "name": f"part {i}", "color": [i * 10, 255 - i * 10, i]} for i in range(25)]
    data = tmp_path / "parts"
    make_folder(data, n=3, size=(64, 64), classes=classes)
    bad = data / "labels" / "train" / "field_002.png"
    save_grey(bad, np.full((64, 64), 30))
    res = _extract(data, "train", tmp_path / "cache", "--scale", "64x64", "--classes", "part_3,part_20,24")
    want = "warning: skipped sample field_002: labels/train/field_002.png: corrupt train-id label: values {30}"
    assert want + " outside the class ids 0..24 and ignore 255" in res.output
    reader = CacheReader(tmp_path / "cache")
    assert [s.id for s in reader.record.skipped] == ["field_002"]
    assert reader.record.class_names == ["part 3", "part 20", "part 24"]
    counts = count_classes(reader, reader.complete_indices())
    assert counts.shape == (2, 25) and counts[:, 19:].sum() > 0
    _cli("cache", "verify", tmp_path / "cache")
