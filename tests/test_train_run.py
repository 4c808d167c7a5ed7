"""A training run end to end: the run directory, the resume state, exact resume, the --out rules."""

import json
import re
from pathlib import Path

import pytest
import torch
from helpers import FAST_TRAIN, SMALL
from safetensors.torch import load_file
from typer.testing import CliRunner

from diffseg.cache.synthetic import make_cache, poison_sample
from diffseg.cli import app
from diffseg.core.errors import DiffsegError
from diffseg.stages.train import job as train
from diffseg.stages.train.config import TrainConfig


def test_run_directory_records(tmp_path):
    cache = make_cache(tmp_path / "gtav", n=4, **SMALL)
    ev = make_cache(
        tmp_path / "cs", n=2, kind="eval", dataset="cityscapes", split="val", branches=("uncond",), seed=1, **SMALL
    )
    run = train.main(cache=cache, out=tmp_path / "run", eval_caches=[ev], **{**FAST_TRAIN, "ckpt_every": 1})
    names = {p.relative_to(run).as_posix() for p in run.rglob("*")}
    assert {
        "config.json",
        "caches.json",
        "metrics.jsonl",
        "weights.safetensors",
        "eval.json",
        "eval.md",
        "checkpoints/iter_0000002.safetensors",
        "checkpoints/iter_0000002.state.pt",
        "eval/iter_0000002.json",
    } <= names
    assert {"checkpoints/iter_0000001.sha256", "checkpoints/iter_0000002.sha256"} <= names  # the newest two kept
    assert (run / "checkpoints/iter_0000002.sha256").read_text().splitlines()[1].endswith("  iter_0000002.state.pt")
    record = json.loads((run / "config.json").read_text())
    cfg = TrainConfig.from_dict(record["config"])
    assert cfg.layers == ("up1.res2", "up2.res2", "up3.res2") and cfg.branches == ("uncond", "cond")
    assert cfg.consistency == "l2" and record["world_size"] == 1
    caches = json.loads((run / "caches.json").read_text())
    assert caches["train"]["model_fingerprint"] == "5e" * 8 and caches["train"]["samples"] == 4
    assert {"extract_hash", "ids_hash", "path"} <= set(caches["train"]) and len(caches["eval"]) == 1
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"iter", "total", "ce_cond", "ce_uncond", "cons", "lr", "samples_per_s", "data_wait_s"} <= set(lines[0])
    assert lines[-1]["iter"] == 2 and 0 <= lines[-1]["eval_miou"] <= 1
    state = torch.load(run / "checkpoints/iter_0000002.state.pt", weights_only=True)
    assert state["iteration"] == 2 and state["optimizer"]["state"] and state["rng"]["torch"].dtype == torch.uint8
    weights = load_file(run / "weights.safetensors")
    assert torch.equal(
        weights["head.classifier.weight"],
        load_file(run / "checkpoints/iter_0000002.safetensors")["head.classifier.weight"],
    )
    report = json.loads((run / "eval.json").read_text())
    assert report["samples"] == 2 and report["dataset"] == "cityscapes" and len(report["per_class_iou"]) == 19


def test_resume_gives_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = make_cache(tmp_path / "cache" / "gtav", n=5, **SMALL)
    kw = {**FAST_TRAIN, "iters": 4, "ckpt_every": 2}
    full = train.main(cache=cache, out=tmp_path / "full", **kw)
    part = train.main(cache=cache, stop_at=2, **kw)  # default run dir, interrupted after iteration 2
    assert part.parent == Path("runs") and part.name.startswith("gtav-")
    assert not (part / "weights.safetensors").exists()
    changed = CliRunner().invoke(
        app,
        [
            "train",
            "--cache",
            str(cache),
            "--out",
            str(part),
            "--resume",
            "--iters",
            "999",
            "--read-threads",
            "0",
            "--device",
            "cpu",
        ],
    )
    assert changed.exit_code == 1 and "--iters 4" in changed.output and "999" in changed.output
    assert "Traceback" not in changed.output and not (part / "weights.safetensors").exists()
    resumed = train.main(cache=cache, resume=True, **kw)  # the same options: accepted
    assert resumed == part
    # rare-class sampling is on (several classes) and its state is in the resume state
    assert json.loads((part / "config.json").read_text())["config"]["rcs_temperature"] == 0.01
    sampler = torch.load(part / "checkpoints/iter_0000004.state.pt", weights_only=True)["sampler"]
    stats = json.loads((part / "class_stats.json").read_text())
    assert sampler["rcs_temperature"] == 0.01 and sampler["class_stats"] == stats["digest"]
    a, b = load_file(full / "weights.safetensors"), load_file(part / "weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_existing_out_without_resume_and_nan_feature_exit_1(tmp_path):
    cache = make_cache(tmp_path / "gtav", n=3, **SMALL)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("")
    args = [
        "train",
        "--cache",
        str(cache),
        "--iters",
        "1",
        "--fusion",
        "light",
        "--read-threads",
        "0",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "already exists" in result.output and "--resume" in result.output
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "nope"), "--resume"])
    assert result.exit_code == 1 and "not a run directory" in result.output
    poison_sample(cache, "cond/up2.res2", 1)
    # uniform sampling: one iteration of batch 3 visits each of the 3 samples (the CLI takes --rcs-temperature)
    nan_args = [*args, "--out", str(tmp_path / "nan"), "--batch-size", "3", "--rcs-temperature", "0"]
    result = CliRunner().invoke(app, nan_args)
    assert result.exit_code == 1 and "NaN" in result.output and "00001 (cond/up2.res2)" in result.output
    assert "Traceback" not in result.output


def test_branch_rules(tmp_path):
    cache = make_cache(tmp_path / "gtav", n=2, branches=("uncond",), **SMALL)
    run = train.main(cache=cache, out=tmp_path / "run", **{**FAST_TRAIN, "iters": 1})
    cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text())["config"])
    assert cfg.branches == ("uncond",) and cfg.w_cond == 0 and cfg.consistency == "none"
    both = make_cache(tmp_path / "both", n=2, **SMALL)
    result = CliRunner().invoke(app, ["train", "--cache", str(both), "--out", str(tmp_path / "r2"), "--w-uncond", "0"])
    assert result.exit_code == 1 and "--consistency none" in result.output


def test_resume_refuses_changed_options_and_accepts_defaults(tmp_path):
    cache = make_cache(tmp_path / "gtav", n=3, **SMALL)
    kw = {**FAST_TRAIN, "iters": 2, "ckpt_every": 1}
    run = train.main(cache=cache, out=tmp_path / "run", stop_at=1, layers=("up2.res2", "up3.res2"), **kw)
    cases = [
        ({"lr": 5e-4}, "--lr 0.001"),
        ({"layers": ("up1.res2",)}, "--layers up2.res2,up3.res2"),
        ({"w_cons": 0.5}, "--w-cons 1.0"),
        ({"branches": ("uncond",)}, "--branches uncond,cond"),
        ({"seed": 3}, "--seed 0"),
        ({"kinds": ("res",), "layers": None}, "--kinds res (layers up2.res2,up3.res2)"),
    ]
    for change, named in cases:
        with pytest.raises(DiffsegError, match=re.escape(named)):
            train.main(cache=cache, out=run, resume=True, **{**kw, "layers": ("up2.res2", "up3.res2"), **change})
    # options equal to main's defaults count as not given; runtime options may change
    train.main(
        cache=cache,
        out=run,
        resume=True,
        fusion="light",
        iters=2,
        warmup=0,
        lr=1e-3,
        eval_every=0,
        ckpt_every=1,
        device="cpu",
        workers=0,
        in_memory=True,
        kinds=("res",),
        layers=("up2.res2", "up3.res2"),
        branches=("cond", "uncond"),
        consistency="l2",
        w_cond=1.0,
    )
    assert (run / "weights.safetensors").is_file()


class Crash(BaseException):
    """Stands in for a SIGKILL at one point of a checkpoint write (nothing catches it)."""


@pytest.mark.parametrize("where", ["between_weights_and_state", "inside_the_weights_file"])
def test_a_crash_during_a_checkpoint_write_resumes_to_the_same_weights(tmp_path, monkeypatch, where):
    from diffseg.stages.train import checkpoint

    cache = make_cache(tmp_path / "gtav", n=5, **SMALL)
    kw = {**FAST_TRAIN, "iters": 6, "ckpt_every": 2}
    full = train.main(cache=cache, out=tmp_path / "full", **kw)
    real_save, real_save_file = checkpoint.torch.save, checkpoint.save_file

    def save_state(obj, path, *a, **k):  # the weights of iteration 4 are complete, its state is not
        if "iter_0000004" in str(path):
            raise Crash
        return real_save(obj, path, *a, **k)

    def save_half(tensors, path, *a, **k):  # iteration 4's weights file is cut off mid-write
        if "iter_0000004" in str(path):
            real_save_file(tensors, path, *a, **k)
            with open(path, "r+b") as f:
                f.truncate(Path(path).stat().st_size // 2)
            raise Crash
        return real_save_file(tensors, path, *a, **k)

    if where == "between_weights_and_state":
        monkeypatch.setattr(checkpoint.torch, "save", save_state)
    else:
        monkeypatch.setattr(checkpoint, "save_file", save_half)
    run = tmp_path / "crashed"
    with pytest.raises(Crash):
        train.main(cache=cache, out=run, **kw)
    assert [it for it, _ in checkpoint.list_checkpoints(run)] == [2]  # the half-written one is not listed
    monkeypatch.undo()
    train.main(cache=cache, out=run, resume=True, **kw)
    a, b = load_file(full / "weights.safetensors"), load_file(run / "weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
