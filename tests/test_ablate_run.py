"""`diffseg ablate` end to end on small synthetic caches (diffseg.cache.synthetic) with the real trainer."""

import csv
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffseg.cache.synthetic import make_cache, unet_geometry
from diffseg.cli import app
from diffseg.core.errors import DiffsegError
from diffseg.stages.ablate import job as ablate
from diffseg.stages.ablate.cells import TABLE4
from diffseg.stages.runs.seeds import mean_std

LAYERS = ("up3.res0", "up3.res2")  # one stride, two res layers: baseline differs from diff
BLOCKS = dict(unet=unet_geometry((4, 4, 4, 4)), labels="blocks", features="label")  # 4 channels each
KW = dict(iters=2, batch_size=1, fusion="light", warmup=1, features=True, device="cpu", seed=0, workers=0)


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate")
    common = dict(resolution=(32, 32), layers=LAYERS, save_steps=(1,), signal=2.0, block=8, **BLOCKS)
    train = make_cache(root / "train", n=2, **common)
    target = make_cache(root / "cs", n=1, kind="eval", dataset="cityscapes", split="val", **common)
    return root, train, target


@pytest.fixture(scope="module")
def finished(caches):
    root, train, target = caches
    out = ablate.main(cache=train, eval_caches=[target], out=root / "abl", **KW)
    return out, train, target


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "ablation.csv") as f:
        return {r["cell"]: r for r in csv.DictReader(f)}


def test_writes_table_iv_with_finite_numbers(finished):
    out, _, _ = finished
    rows = _rows(out)
    assert list(rows)[:5] == list(TABLE4)
    for name in TABLE4:
        v = float(rows[name]["miou:cs"])
        assert math.isfinite(v) and 0 <= v <= 1
        assert rows[name]["status"] == "ran"
    assert rows["ipkl-l2"]["paper_miou"] == "0.5801"
    md = (out / "ablation.md").read_text()
    assert "| ipkl-l2 |" in md and "58.01" in md and "| cs |" in md
    # feature axis: listed, aliases named, inapplicable kinds listed with their reason
    assert rows["steps-all"]["status"] == "same_as:ipkl-l2"
    assert rows["steps-all"]["miou:cs"] == rows["ipkl-l2"]["miou:cs"]
    assert rows["kinds-res+blk+xattn"]["status"] == "n/a" and rows["kinds-res+blk+xattn"]["miou:cs"] == ""
    assert "not applicable" in rows["kinds-res+blk"]["description"]
    assert (out / "ablation.png").stat().st_size > 5000
    for name in TABLE4:
        assert (out / "cells" / name / "weights.safetensors").is_file()


def test_rerun_only_runs_the_missing_cell(finished, monkeypatch):
    out, train, target = finished
    (out / "cells" / "ipkl-kl" / "weights.safetensors").unlink()  # its scores stay: must not be reused
    before = {n: (out / "cells" / n / "weights.safetensors").stat().st_mtime_ns for n in TABLE4 if n != "ipkl-kl"}
    calls = []
    real = ablate.train_stage.main
    monkeypatch.setattr(ablate.train_stage, "main", lambda **kw: calls.append(kw) or real(**kw))
    ablate.main(cache=train, eval_caches=[target], out=out, **KW)
    assert [Path(c["out"]).name for c in calls] == ["ipkl-kl"]
    assert calls[0]["resume"] is True  # its config.json was there: resumed from the last checkpoint
    after = {n: (out / "cells" / n / "weights.safetensors").stat().st_mtime_ns for n in before}
    assert after == before
    assert math.isfinite(float(_rows(out)["ipkl-kl"]["miou:cs"]))
    assert (out / "cells" / "ipkl-kl" / ablate.SCORES).stat().st_mtime_ns > after["ipkl-l2"]


def test_new_target_is_scored_without_retraining(finished, tmp_path, monkeypatch):
    out, train, target = finished
    night = make_cache(
        tmp_path / "night",
        n=1,
        kind="eval",
        dataset="demo",
        split="val-night",
        resolution=(32, 32),
        layers=LAYERS,
        save_steps=(1,),
        signal=1.0,
        block=8,
        seed=5,
        **BLOCKS,
    )
    calls = []
    monkeypatch.setattr(ablate.train_stage, "main", lambda **kw: calls.append(kw))
    ablate.main(cache=train, eval_caches=[target, night], out=out, **KW)
    assert calls == []
    rows = _rows(out)
    for name in TABLE4:
        assert 0 <= float(rows[name]["miou:night"]) <= 1
        assert rows[name]["miou:mean"] != ""


def test_changed_settings_are_refused_not_mixed(finished):
    out, train, target = finished
    with pytest.raises(ablate.DiffsegError, match="iters=2.*iters=3"):
        ablate.main(cache=train, eval_caches=[target], out=out, **{**KW, "iters": 3})


def test_cache_without_cond_branch_exits_1_with_one_line(caches, tmp_path):
    root, _, target = caches
    uncond = make_cache(
        tmp_path / "uncond",
        n=1,
        resolution=(32, 32),
        layers=LAYERS,
        save_steps=(1,),
        branches=("uncond",),
        block=8,
        **BLOCKS,
    )
    res = CliRunner().invoke(
        app,
        [
            "ablate",
            "--cache",
            str(uncond),
            "--eval-cache",
            str(target),
            "--out",
            str(tmp_path / "o"),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and str(uncond) in lines[0] and "--branches uncond,cond" in lines[0]
    assert not (tmp_path / "o").exists()


def test_seeds_give_each_cell_a_run_per_seed_and_mean_std(caches, tmp_path):
    _, train, target = caches
    kw = {**KW, "features": False}
    kw.pop("seed")
    out = ablate.main(cache=train, eval_caches=[target], out=tmp_path / "abl", seeds=(0, 1), **kw)
    rows = _rows(out)
    for name in TABLE4:
        per_seed = []
        for s in (0, 1):
            run = out / "cells" / name / f"seed-{s}"
            assert (run / "weights.safetensors").is_file()
            assert json.loads((run / "config.json").read_text())["config"]["seed"] == s
            per_seed.append(json.loads((run / "ablation_scores.json").read_text())["targets"]["cs"]["miou"])
        mean, std = mean_std(per_seed)
        assert float(rows[name]["miou:cs"]) == pytest.approx(mean, abs=1e-6)
        assert float(rows[name]["miou_std:cs"]) == pytest.approx(std, abs=1e-6)
    table = (out / "ablation.md").read_text()
    assert "seeds 0, 1 (mean +- std)" in table and " +- " in table.split("| cell |")[1]
    with pytest.raises(DiffsegError, match="--seed and --seeds"):
        ablate.main(cache=train, eval_caches=[target], out=tmp_path / "x", seeds=(0, 1), seed=0, **kw)


def test_cells_on_cuda_spread_over_the_gpus_and_read_with_threads(caches, monkeypatch):
    """--jobs N on a 3-GPU machine (mocked: only planning runs): run k trains on cuda:k mod 3, not every
    run on cuda:0, and a GPU cell keeps train's reader threads; the CPU plan is unchanged."""
    import torch

    from diffseg.stages.device import resolve_device
    from diffseg.stages.train import job as train_stage
    from diffseg.stages.train.config import default

    root, train, target = caches
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    kw = {k: v for k, v in KW.items() if k not in ("workers", "seed")}
    p = ablate.plan(cache=train, eval_caches=[target], out=root / "gpu", seeds=(0, 1), **{**kw, "device": "cuda"})
    runs = p.runs()
    assert len(runs) > 3
    assert [o["device"] for _, _, o in runs] == [f"cuda:{k % 3}" for k in range(len(runs))]
    assert not [o for _, _, o in runs if "workers" in o]  # not given: train takes TrainConfig's
    assert train_stage.resolve_config(**runs[0][2])[0].workers == default("workers") > 0
    assert resolve_device("cuda:2") == torch.device("cuda", 2)
    with pytest.raises(DiffsegError, match="cuda:3: 3 CUDA devices are visible"):
        resolve_device("cuda:3")
    cpu = ablate.plan(cache=train, eval_caches=[target], out=root / "cpu", **{**kw, "device": "cpu"}).runs()
    assert {(o["device"], o["workers"]) for _, _, o in cpu} == {("cpu", 0)}
