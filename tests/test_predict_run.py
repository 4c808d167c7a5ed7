"""`diffseg predict` on a run trained from a real (tiny model, demo data, 64x64, 1step) cache;
the run is self-contained (predict works once its training cache is gone).

The module fixture extracts a one-image uncond training cache and a one-image evaluation cache,
and trains a light run for two iterations: enough to have real weights, not a good model.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import PREDICT_TRAIN
from PIL import Image
from typer.testing import CliRunner

from diffseg.cache import CacheReader
from diffseg.cli import app
from diffseg.core.classes import PALETTE
from diffseg.data import open_dataset
from diffseg.stages import viz
from diffseg.stages.runs.record import load_segmentor, read_run
from diffseg.stages.train import job as train

RUNNER = CliRunner()
LAYERS = PREDICT_TRAIN["layers"]


def _extract(out: Path, split: str, *extra):
    res = RUNNER.invoke(
        app,
        [
            "extract",
            "--dataset",
            "demo",
            "--split",
            split,
            "--model",
            "tiny",
            "--preset",
            "1step",
            "--resolution",
            "64x64",
            "--limit",
            "1",
            "--out",
            str(out),
            "--device",
            "cpu",
            *extra,
        ],
    )
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    _extract(root / "train", "train", "--branches", "uncond")
    _extract(root / "val", "val")
    run = train.main(
        cache=root / "train",
        out=root / "run",
        **PREDICT_TRAIN,
    )
    return root, run


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of mixed sizes and formats, plus a file that is not an image."""
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 255, (90, 60, 3), dtype=np.uint8)).save(folder / "b.jpg", quality=90)
    Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(folder / "c.png")  # greyscale
    (folder / "notes.txt").write_text("not an image")
    return folder


def _predict(run, *args):
    return RUNNER.invoke(app, ["predict", "--run", str(run), "--resolution", "64x64", "--device", "cpu", *args])


def test_folder_of_mixed_images(run_dir, images, tmp_path):
    _, run = run_dir
    res = _predict(run, str(images), "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert "skipping" in res.output and "notes.txt" in res.output
    for name, path in (("a", "a.png"), ("b", "b.jpg"), ("c", "c.png")):
        src = Image.open(images / path)
        mask = Image.open(tmp_path / f"{name}.png")
        assert mask.mode == "P" and mask.size == src.size
        idx = np.asarray(mask)
        assert idx.max() < 19
        pal = np.array(mask.getpalette()[:57], np.uint8).reshape(19, 3)
        np.testing.assert_array_equal(pal, PALETTE)
        vis = Image.open(tmp_path / f"{name}_vis.png")
        ph, pw = viz.panel_size(src.size[1], src.size[0])
        assert vis.size[0] == 2 * pw + viz.GAP  # image | prediction
    assert not (tmp_path / "notes.png").exists()


def test_prediction_equals_scoring_on_the_cached_features(run_dir, tmp_path):
    """Online trajectory = the cache's: the mask equals the run applied to the cached features."""
    root, run = run_dir
    sample = open_dataset("demo", split="val", demo_size=(64, 64)).load(0)
    Image.fromarray(sample.image).save(tmp_path / "val0.png")
    res = _predict(run, str(tmp_path / "val0.png"), "--out", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    mask = np.asarray(Image.open(tmp_path / "out" / "val0.png"))
    reader = CacheReader(root / "val")
    feats = reader.read(0, [f"uncond/{l}" for l in LAYERS])
    model, _ = load_segmentor(read_run(run), "cpu")
    with torch.no_grad():
        logits = model({l: torch.from_numpy(feats[f"uncond/{l}"])[None].float() for l in LAYERS})
    up = torch.nn.functional.interpolate(logits, size=(64, 64), mode="bilinear", align_corners=False)
    np.testing.assert_array_equal(mask, up.argmax(1)[0].numpy())


def test_labels_add_ground_truth_panel(run_dir, images, tmp_path):
    _, run = run_dir
    labels = tmp_path / "labels"
    labels.mkdir()
    gt = np.zeros((50, 70), np.uint8)
    gt[25:] = 13
    gt[0, 0] = 255
    Image.fromarray(gt).save(labels / "a.png")  # train-id PNG (mode L)
    viz.save_mask(labels / "b.png", np.full((90, 60), 10, np.uint8))  # palette PNG
    res = _predict(
        run, str(images / "a.png"), str(images / "b.jpg"), "--labels", str(labels), "--out", str(tmp_path / "out")
    )
    assert res.exit_code == 0, res.output
    assert "mIoU" in res.output and "2 labelled images" in res.output
    for name, (h, w) in (("a", (50, 70)), ("b", (90, 60))):
        ph, pw = viz.panel_size(h, w)
        assert Image.open(tmp_path / "out" / f"{name}_vis.png").size[0] == 3 * pw + 2 * viz.GAP


def test_non_image_named_directly_is_one_line_exit_1(run_dir, images, tmp_path):
    _, run = run_dir
    res = _predict(run, str(images / "a.png"), str(images / "notes.txt"), "--out", str(tmp_path / "o"))
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "notes.txt" in lines[0] and "not an image" in lines[0]


def test_bad_resolution_is_refused(run_dir, images, tmp_path):
    _, run = run_dir
    res = RUNNER.invoke(
        app, ["predict", "--run", str(run), "--resolution", "100x64", str(images), "--out", str(tmp_path)]
    )
    assert res.exit_code == 1 and "multiples of 64" in res.output


def test_model_fingerprint_mismatch(run_dir, images, tmp_path):
    root, run = run_dir
    other = tmp_path / "run"
    other.mkdir()
    for f in ("config.json", "weights.safetensors"):
        (other / f).write_bytes((run / f).read_bytes())
    caches = json.loads((run / "caches.json").read_text())
    caches["train"]["model_fingerprint"] = "0" * 64
    (other / "caches.json").write_text(json.dumps(caches))
    res = _predict(other, str(images / "c.png"), "--out", str(tmp_path / "o1"))
    assert res.exit_code == 1 and "0" * 64 in res.output and "--model" in res.output
    res = _predict(other, str(images / "c.png"), "--model", "tiny", "--out", str(tmp_path / "o2"))
    assert res.exit_code == 0, res.output
    assert "warning" in res.output and "0" * 64 in res.output
    assert (tmp_path / "o2" / "c.png").is_file()


def _copy_run(run: Path, other: Path, cache: Path, drop_extract: bool = False) -> Path:
    """A copy of the run whose config names another training cache (`cache`, e.g. one that is gone);
    `drop_extract`: as runs wrote caches.json before it recorded the training cache's extract config."""
    other.mkdir()
    config = json.loads((run / "config.json").read_text())
    config["config"]["cache"] = str(cache)
    (other / "config.json").write_text(json.dumps(config))
    caches = json.loads((run / "caches.json").read_text())
    if drop_extract:
        del caches["train"]["extract"]
    (other / "caches.json").write_text(json.dumps(caches))
    (other / "weights.safetensors").write_bytes((run / "weights.safetensors").read_bytes())
    return other


def test_run_is_self_contained(run_dir, images, tmp_path):
    """The run records the training cache's extract config: predict needs no training cache."""
    root, run = run_dir
    recorded = json.loads((run / "caches.json").read_text())["train"]["extract"]
    assert recorded == CacheReader(root / "train").record.extract.to_dict()
    other = _copy_run(run, tmp_path / "run", tmp_path / "gone")
    res = _predict(other, str(images / "c.png"), "--out", str(tmp_path / "o"))
    assert res.exit_code == 0, res.output
    res = _predict(run, str(images / "c.png"), "--out", str(tmp_path / "o-orig"))
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "o" / "c.png")), np.asarray(Image.open(tmp_path / "o-orig" / "c.png"))
    )


def test_recorded_extract_config_is_checked_against_its_hash(run_dir, images, tmp_path):
    _, run = run_dir
    other = _copy_run(run, tmp_path / "run", tmp_path / "gone")
    caches = json.loads((other / "caches.json").read_text())
    caches["train"]["extract"]["uncond_prompt"] = "classes"
    (other / "caches.json").write_text(json.dumps(caches))
    res = _predict(other, str(images / "c.png"), "--out", str(tmp_path / "o"))
    assert res.exit_code == 1 and "caches.json" in res.output and "extract config hash" in res.output


def test_old_run_whose_training_cache_is_gone(run_dir, images, tmp_path):
    root, run = run_dir
    other = _copy_run(run, tmp_path / "run", tmp_path / "gone", drop_extract=True)
    res = _predict(other, str(images / "c.png"), "--out", str(tmp_path / "o"))
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "gone" in lines[0] and "trajectory" in lines[0]
    old = _copy_run(run, tmp_path / "run-old", root / "train", drop_extract=True)  # falls back to the cache
    res = _predict(old, str(images / "c.png"), "--out", str(tmp_path / "o-old"))
    assert res.exit_code == 0, res.output


def test_eval_checks_real_caches_extract_config(run_dir, tmp_path):
    """A real evaluation cache made with the other uncond prompt is refused; the matching one is scored."""
    root, run = run_dir
    res = RUNNER.invoke(app, ["eval", "--run", str(run), "--cache", str(root / "val"), "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    _extract(tmp_path / "val-classes", "val", "--uncond-prompt", "classes")
    res = RUNNER.invoke(app, ["eval", "--run", str(run), "--cache", str(tmp_path / "val-classes"), "--device", "cpu"])
    assert res.exit_code == 1
    line = " ".join(res.output.split())
    assert 'extract.uncond_prompt="classes"; the training cache' in line and 'with "empty"' in line


def test_predict_takes_a_per_seed_run(run_dir, images, tmp_path):
    root, _ = run_dir
    parent = train.main_seeds(
        cache=root / "train",
        seeds=(0, 1),
        out=tmp_path / "seeds",
        **PREDICT_TRAIN,
    )
    res = _predict(parent / "seed-1", str(images / "a.png"), "--out", str(tmp_path / "pred"))
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "pred" / "a.png").mode == "P"
    refused = _predict(parent, str(images / "a.png"), "--out", str(tmp_path / "nope"))
    assert refused.exit_code == 1 and "seed-0" in refused.output


def test_predict_and_eval_run_the_segmentor_under_the_same_autocast(run_dir, tmp_path, monkeypatch):
    """On CUDA both take autocast_dtype's bf16/fp16 (forced to bf16 here, on CPU): the segmentor runs
    under it in predict as in eval, and the mask equals the run applied under it to the cached features."""
    from diffseg.nn.segmentor import Segmentor
    from diffseg.stages import evaluate
    from diffseg.stages.predict import job as predict
    from diffseg.stages.runs import record

    root, run = run_dir
    seen: dict[str, list] = {"predict": [], "eval": []}
    stage = ["predict"]
    forward = Segmentor.forward

    def spy(self, *args, **kwargs):
        seen[stage[0]].append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(Segmentor, "forward", spy)
    for module in (predict, record):
        monkeypatch.setattr(module, "autocast_dtype", lambda device: torch.bfloat16)
    sample = open_dataset("demo", split="val", demo_size=(64, 64)).load(0)
    Image.fromarray(sample.image).save(tmp_path / "val0.png")
    res = _predict(run, str(tmp_path / "val0.png"), "--out", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    stage[0] = "eval"
    evaluate.main(run, [str(root / "val")], device="cpu")
    assert seen == {"predict": [(True, torch.bfloat16)], "eval": [(True, torch.bfloat16)]}
    feats = CacheReader(root / "val").read(0, [f"uncond/{l}" for l in LAYERS])
    model, _ = load_segmentor(read_run(run), "cpu")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = forward(model, {l: torch.from_numpy(feats[f"uncond/{l}"])[None].float() for l in LAYERS})
    up = torch.nn.functional.interpolate(logits.float(), size=(64, 64), mode="bilinear", align_corners=False)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "val0.png")), up.argmax(1)[0].numpy())


def test_outputs_never_replace_inputs_and_replace_outputs_only_when_asked(run_dir, images, tmp_path):
    _, run = run_dir
    photos = tmp_path / "photos"
    shutil.copytree(images, photos)
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    for out in (photos, tmp_path):  # the input folder itself, a folder above it
        res = _predict(run, str(photos), "--out", str(out), "--overwrite")
        assert res.exit_code == 1 and "Traceback" not in res.output
        assert f"--out {out} " in res.output and "input" in res.output
    res = _predict(run, str(photos / "a.png"), "--out", str(photos))  # the file's own folder
    assert res.exit_code == 1 and "holds the input" in res.output
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before  # nothing written, nothing replaced
    out = tmp_path / "masks"
    assert _predict(run, str(photos), "--out", str(out)).exit_code == 0
    first = (out / "a.png").read_bytes()
    (out / "a.png").write_bytes(b"an earlier result")
    res = _predict(run, str(photos), "--out", str(out))
    assert res.exit_code == 1 and "a.png already exists (and 5 more)" in res.output
    assert "--overwrite" in res.output and (out / "a.png").read_bytes() == b"an earlier result"
    assert _predict(run, str(photos), "--out", str(out), "--overwrite").exit_code == 0
    assert (out / "a.png").read_bytes() == first
