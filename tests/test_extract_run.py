"""`diffseg extract` end to end on the demo dataset and the tiny model (64x64, lite).

One uninterrupted extraction (module fixture) is the reference that the other runs (a rerun,
a run killed with SIGKILL and resumed, `--dask-workers 2`) must reproduce byte for byte.

Every run here uses one torch thread (this process, the killed subprocess, each dask worker):
with different thread counts the CPU kernels sum in another order, and after five trajectory
steps the float16 features differ by a few units in the last place (measured: 2 vs 1 threads,
up to ~2e-3 relative), so byte identity holds only between runs with equal thread counts.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from diffseg.cache import CacheReader
from diffseg.cli import app
from diffseg.core.seeds import stable_seed
from diffseg.data import open_dataset
from diffseg.pipeline.config import preset
from diffseg.pipeline.extractor import FeatureExtractor
from diffseg.pipeline.models import load_models
from diffseg.stages.extract.views import train_view

BASE = ["extract", "--dataset", "demo", "--model", "tiny", "--resolution", "64x64", "--limit", "3"]
RUNNER = CliRunner()


def extract(*args, out):
    result = RUNNER.invoke(app, [*BASE, "--out", str(out), *args])
    return result


# The child of kill_after_first_sample: the CLI, except that the cache writer stops for good inside
# sample 1's write, once one of its arrays is written, and says so in the file $DIFFSEG_TEST_PAUSED.
# A kill then always lands mid-run (sample 0 complete, sample 1 half written), however fast the machine.
PAUSED_CHILD = """
import os, threading
from pathlib import Path
from diffseg.cache import schema
from diffseg.cache.writer import CacheWriter
put = CacheWriter._put
def put_then_pause(self, name, i, value):
    put(self, name, i, value)
    if i == 1 and name != schema.STATUS:
        Path(os.environ["DIFFSEG_TEST_PAUSED"]).touch()
        threading.Event().wait()  # until the SIGKILL
CacheWriter._put = put_then_pause
from diffseg.cli import main
main()
"""


def kill_after_first_sample(out, *flags: str, timeout: float = 180):
    """Run `extract BASE *flags --out out` in a child process that pauses inside sample 1's write
    (PAUSED_CHILD) and SIGKILL it there, once sample 0's completion marker (written last) exists
    too; asserts the kill interrupted it (sample 0 complete, another still pending); -> the
    cache's status array after the kill."""
    paused = out.parent / f"{out.name}.paused"
    cmd = [sys.executable, "-c", PAUSED_CHILD, *BASE, *flags, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DIFFSEG_TEST_PAUSED": str(paused)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    first = out / "status" / "c" / "0"
    deadline = time.monotonic() + timeout
    while not (paused.exists() and first.exists()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    status = CacheReader(out).status
    assert status[0] == 1 and status[1] == 0, f"the kill did not land inside sample 1: {status}"
    return status


def arrays(path) -> dict[str, np.ndarray]:
    """Every array of a cache (features, labels, status), complete samples only."""
    r = CacheReader(path)
    names = r.feature_names() + ["labels"]
    out = {n: np.stack([r.read(i, [n])[n] for i in range(r.n)]) for n in names}
    out["status"] = r.status
    return out


def assert_same_bytes(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "cache"
    result = extract(out=out)
    assert result.exit_code == 0, result.output
    assert "done: 3 samples written, 0 skipped" in result.output
    return out


def test_train_cache_features_equal_direct_extraction(base):
    r = CacheReader(base)
    assert r.record.kind == "train" and r.branches == ["uncond", "cond"]
    assert sorted(r.feature_names()) == sorted(f"{b}/up{i}.res2" for b in ("uncond", "cond") for i in (1, 2, 3))
    assert (
        r.record.model.name == "tiny"
        and r.record.attention_backend == "sdpa"
        and r.record.extract.trajectory == preset("lite").to_dict()
    )
    assert r.record.layers["up3.res2"].to_dict() == {"kind": "res", "stride": 8, "channels": 32, "size": [8, 8]}
    assert "orig_labels" not in r.group and list(r.status) == [1, 1, 1]
    assert r.record.extract.views_rule.photometric["hue_delta"] == 18
    models = load_models("tiny")
    ex = FeatureExtractor(models, preset("lite"))
    ds = open_dataset("demo", demo_size=(64, 64))
    for i in range(3):
        sid = r.ids[i]
        s = ds.load(i)
        gen = torch.Generator().manual_seed(stable_seed(0, "view", sid))
        photo = torch.Generator().manual_seed(stable_seed(0, "photometric", sid))
        image, label = train_view(sid, s.image, s.label, (64, 64), (64, 64), gen, photometric_gen=photo)
        got = r.read(i, r.feature_names() + ["labels"])
        assert np.array_equal(got["labels"], label)
        want = {"uncond": ex.uncond(image, sid), "cond": ex.cond(image, label, sid)}
        for name in r.feature_names():
            branch, layer = name.split("/")
            assert np.array_equal(got[name], want[branch][layer]), name


def test_same_command_twice_gives_identical_bytes_and_rerun_resumes(base, tmp_path):
    again = tmp_path / "again"
    assert extract(out=again).exit_code == 0
    assert_same_bytes(arrays(base), arrays(again))
    result = extract(out=again)  # everything complete: nothing recomputed
    assert result.exit_code == 0 and "done: 0 samples written" in result.output


def test_killed_run_resumes_to_identical_arrays(base, tmp_path):
    out = tmp_path / "killed"
    status = kill_after_first_sample(out)
    result = extract(out=out)
    assert result.exit_code == 0, result.output
    assert f"done: {int((status == 0).sum())} samples written" in result.output
    assert_same_bytes(arrays(base), arrays(out))


def test_two_workers_give_the_same_arrays(base, tmp_path):
    out = tmp_path / "dask"
    result = extract("--dask-workers", "2", out=out)
    assert result.exit_code == 0, result.output
    assert "start-up: cluster" in result.output and "done: 3 samples written" in result.output
    # 2 workers on 2 cores: 1 torch thread each, as this process (module fixture): byte-identical.
    assert_same_bytes(arrays(base), arrays(out))
    record = CacheReader(out).record
    assert record.host["workers"] == 2 and record.attention_backend == "sdpa" and record.timings["cluster_s"] > 0


def test_eval_cache_keeps_labels_at_the_original_size(tmp_path):
    from datagen import make_cityscapes

    expected = make_cityscapes(tmp_path / "cs", split="val", n=2, size=(96, 48))
    out = tmp_path / "cs-val"
    result = RUNNER.invoke(
        app,
        [
            "extract",
            "--dataset",
            "cityscapes",
            "--root",
            str(tmp_path / "cs"),
            "--split",
            "val",
            "--model",
            "tiny",
            "--resolution",
            "64x64",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    r = CacheReader(out)
    assert r.record.kind == "eval" and r.branches == ["uncond"] and r.feature_names()[0].startswith("uncond/")
    assert r.zarr_array("orig_labels").shape == (2, 48, 96)
    for i, sid in enumerate(r.ids):
        assert np.array_equal(r.orig_label(i), expected[sid])
        lab = r.read(i, ["labels"])["labels"]
        assert lab.shape == (64, 64) and set(np.unique(lab)) <= set(np.unique(expected[sid]))


def test_dry_run_prints_sizes_and_writes_nothing(tmp_path):
    out = tmp_path / "dry"
    result = extract("--dry-run", out=out)
    assert result.exit_code == 0, result.output
    # per branch: up1 [3,64,2,2] + up2 [3,64,4,4] + up3 [3,32,8,8] = 9984 fp16 values = 19968 B;
    # two branches + a 64x64 label + the status byte = 44033 B per sample, 3 samples.
    assert "bytes per sample: 44033" in result.output
    assert "total: 132099 bytes" in result.output and "free disk at" in result.output
    assert not out.exists()


def test_disk_too_small_refuses_before_writing(tmp_path, monkeypatch):
    import shutil
    import types

    monkeypatch.setattr(
        shutil, "disk_usage", lambda p: types.SimpleNamespace(total=10**6, used=10**6 - 1000, free=1000)
    )
    out = tmp_path / "small"
    result = extract(out=out)
    assert result.exit_code == 1
    assert "132099 bytes" in result.output and "1000 bytes" in result.output
    assert not out.exists()


def test_other_config_on_existing_cache_is_refused(base):
    result = extract("--preset", "1step", out=base)
    assert result.exit_code == 1
    assert "lite" in result.output and "1step" in result.output and "Traceback" not in result.output


def test_cache_of_the_old_seeding_scheme_reads_but_is_not_continued(base, tmp_path):
    import dataclasses
    import shutil

    from diffseg.cache import CacheWriter

    old = tmp_path / "old"
    shutil.copytree(base, old)
    assert CacheReader(base).record.extract.seeding == "content-v1"
    w = CacheWriter(old)
    w.update_record(extract=dataclasses.replace(w.record.extract, seeding="name-v1"))
    assert CacheReader(old).read(0, ["uncond/up3.res2"])["uncond/up3.res2"].shape == (3, 32, 8, 8)
    result = extract(out=old)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "seeding scheme 'name-v1'" in result.output and "'content-v1'" in result.output


def test_unknown_hub_model_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    result = RUNNER.invoke(
        app, ["extract", "--dataset", "demo", "--model", "nobody/no-such-model", "--out", str(tmp_path / "c")]
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "nobody/no-such-model" in lines[0]
    assert not (tmp_path / "c").exists()


def test_views_store_seeded_crops_with_view_ids(tmp_path):
    out = tmp_path / "views"
    result = RUNNER.invoke(
        app,
        [
            "extract",
            "--dataset",
            "demo",
            "--model",
            "tiny",
            "--resolution",
            "64x64",
            "--scale",
            "128x128",
            "--views",
            "2",
            "--limit",
            "1",
            "--branches",
            "uncond",
            "--preset",
            "1step",
            "--layers",
            "up3.res0",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    r = CacheReader(out)
    assert r.ids == ["train/0000#v0", "train/0000#v1"] and r.record.extract.views == 2
    a, b = (r.read(i, ["labels", "uncond/up3.res0"]) for i in (0, 1))
    assert a["labels"].shape == (64, 64) and not np.array_equal(a["uncond/up3.res0"], b["uncond/up3.res0"])


def test_geometry_from_the_unet_config_matches_the_modules():
    """The one geometry function (dry run, extractor, synthetic caches) against the tiny U-Net's modules."""
    from diffseg.core.layers import layer_specs, parse_layer
    from diffseg.pipeline.builtin import TINY_UNET
    from diffseg.pipeline.config import layers_at

    layers = ("up0.res1",) + layers_at([(i, j) for i in (1, 2, 3) for j in (0, 2)], ("res", "blk", "xattn"))
    models = load_models("tiny")
    unet, vae_stride = models.unet, 2 ** (len(models.vae.config.block_out_channels) - 1)
    specs = layer_specs(TINY_UNET, layers, (128, 64), 5)
    assert specs == layer_specs(unet.config, layers, (128, 64), 5, vae_stride)
    for name, s in specs.items():
        i, kind, j = parse_layer(name)
        if kind == "res":
            channels = unet.up_blocks[i].resnets[j].conv2.out_channels
        elif kind == "blk":
            channels = unet.up_blocks[i].attentions[j].transformer_blocks[0].attn1.to_out[0].out_features
        else:
            channels = 5
        stride = vae_stride * 2 ** sum(1 for b in unet.up_blocks[i:] if getattr(b, "upsamplers", None))
        assert (s.kind, s.channels, s.stride, s.size) == (kind, channels, stride, (64 // stride, 128 // stride))
