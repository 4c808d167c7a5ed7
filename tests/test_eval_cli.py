"""`diffseg eval`: JSON fields, several targets and their mean, Synthia subsets, mismatches, scoring."""

import json

import numpy as np
import pytest
import torch
from helpers import FAST_TRAIN, SMALL
from typer.testing import CliRunner

from diffseg.cache.synthetic import make_cache
from diffseg.cli import app
from diffseg.stages.runs.record import load_segmentor, read_run, run_targets
from diffseg.stages.runs.scoring import confusion_on
from diffseg.stages.train import job as train

EVAL = dict(kind="eval", split="val", branches=("uncond",), **SMALL)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    cache = make_cache(tmp / "gtav", n=3, **SMALL)
    run = train.main(cache=cache, out=tmp / "run", **FAST_TRAIN)
    cs = make_cache(tmp / "cs", n=3, dataset="cityscapes", seed=1, orig_scale=2, **EVAL)
    bdd = make_cache(tmp / "bdd", n=2, dataset="bdd100k", seed=2, orig_scale=3, **EVAL)
    return tmp, run, cs, bdd


def _eval(*args):
    return CliRunner().invoke(app, ["eval", *map(str, args)])


def test_json_one_target(setup):
    tmp, run, cs, _ = setup
    result = _eval("--run", run, "--cache", cs, "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["samples"] == 3 and report["dataset"] == "cityscapes"
    assert len(report["per_class_iou"]) == 19 and "road" in report["per_class_iou"]
    values = [v for v in report["per_class_iou"].values() if v is not None]
    assert values and all(0.0 <= v <= 1.0 for v in values)
    assert report["miou"] == pytest.approx(np.mean(values))
    assert "miou16" not in report  # not a Synthia-trained run
    assert json.loads((run / "eval" / "cs.json").read_text())["miou"] == report["miou"]
    assert (run / "eval" / "cs.md").read_text().startswith("| class | cs | mean |")


def test_several_targets_and_mean(setup):
    tmp, run, cs, bdd = setup
    one = json.loads(_eval("--run", run, "--cache", bdd, "--json", "--device", "cpu").stdout)
    result = _eval("--run", run, "--cache", cs, "--cache", bdd, "--json", "--device", "cpu")
    report = json.loads(result.stdout)
    assert [t["dataset"] for t in report["targets"]] == ["cityscapes", "bdd100k"]
    assert report["targets"][1]["miou"] == pytest.approx(one["miou"])
    assert report["mean_miou"] == pytest.approx(np.mean([t["miou"] for t in report["targets"]]))
    table = _eval("--run", run, "--cache", cs, "--cache", bdd, "--device", "cpu").stdout
    assert "| class | cs | bdd | mean |" in table and "**mIoU**" in table


def test_scores_at_the_original_label_size(setup):
    tmp, run, cs, bdd = setup
    record = read_run(run)
    model, which = load_segmentor(record, "cpu")
    assert which == "final"
    [target] = run_targets(record, [bdd])
    cm, n = confusion_on(model, target, torch.device("cpu"))
    assert n == 2 and int(cm.mat.sum()) == 2 * 96 * 96  # labels at 3x the 32x32 extraction size


def test_synthia_run_reports_subsets(setup):
    tmp, *_ = setup
    syn = make_cache(tmp / "synthia", n=2, dataset="synthia", **SMALL)
    run = train.main(cache=syn, out=tmp / "synrun", **{**FAST_TRAIN, "iters": 1})
    cs = make_cache(tmp / "cs2", n=2, dataset="cityscapes", **EVAL)
    report = json.loads(_eval("--run", run, "--cache", cs, "--json", "--device", "cpu").stdout)
    assert {"miou16", "miou13"} <= set(report)


def test_mismatched_cache_exits_1_naming_both(setup):
    tmp, run, _, _ = setup
    other = make_cache(tmp / "other", n=1, fingerprint="beef" * 4, **EVAL)
    result = _eval("--run", run, "--cache", other)
    assert result.exit_code == 1 and "beef" * 4 in result.output and "5e" * 8 in result.output
    fewer = make_cache(tmp / "fewer", n=1, **{**EVAL, "layers": ("up1.res2", "up2.res2")})
    result = _eval("--run", run, "--cache", fewer)
    assert result.exit_code == 1 and "up3.res2" in result.output and "up1.res2, up2.res2" in result.output


def test_corrupt_run_record_is_one_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{not json")
    cache = tmp_path / "cache"
    cache.mkdir()
    res = _eval("--run", run, "--cache", cache)
    assert res.exit_code == 1, res.output
    assert "not valid JSON" in res.output
