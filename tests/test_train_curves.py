"""`train --log tensorboard`: the same values as metrics.jsonl and the evaluation reports, read back with
tensorboard's own reader; without --log, tensorboard is never imported."""

import json
import subprocess
import sys

import pytest
from helpers import FAST_TRAIN, learnable_caches
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from diffseg.cli import app
from diffseg.stages.train import job as train
from diffseg.stages.train.curves import TB_DIR

KW = {**FAST_TRAIN, "iters": 4, "eval_every": 2, "branches": ("uncond",)}


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    return learnable_caches(tmp_path_factory.mktemp("curves"), n_train=3, n_eval=2)


def test_the_event_file_holds_the_values_of_metrics_jsonl_and_the_evaluations(caches, tmp_path):
    cache, ev = caches
    run = train.main(cache=cache, out=tmp_path / "run", eval_caches=[ev], log="tensorboard", **KW)
    events = EventAccumulator(str(run / TB_DIR), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()

    def curve(tag: str) -> dict[int, float]:
        return {e.step: e.value for e in events.Scalars(tag)}

    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if "total" in x]
    assert len(train_lines) == 4
    for key in ("total", "ce_uncond", "lr", "lr_head", "samples_per_s", "data_wait_s", "data_wait_share"):
        want = {x["iter"]: x[key] for x in train_lines}
        assert curve(f"train/{key}") == pytest.approx(want, rel=1e-6), key
    reports = {it: json.loads((run / "eval" / f"iter_{it:07d}.json").read_text()) for it in (2, 4)}
    assert curve("eval/cs/miou") == pytest.approx({it: r["miou"] for it, r in reports.items()}, rel=1e-6)
    for cls, iou in reports[4]["per_class_iou"].items():
        if iou is not None:
            assert curve(f"eval/cs/iou/{cls}")[4] == pytest.approx(iou, rel=1e-6), cls
    assert [e.step for e in events.Images("eval/predictions")] == [2, 4]
    assert "eval/predictions" in tags["images"]


def test_tensorboard_is_imported_only_when_asked_for(caches, tmp_path):
    cache, _ = caches
    code = (
        "import sys\n"
        "from diffseg.stages.train import job\n"
        "for k, log in enumerate([None, 'tensorboard']):\n"
        f"    job.main(cache={str(cache)!r}, out={str(tmp_path)!r} + f'/run{{k}}', fusion='light', iters=1, warmup=0,\n"
        "             workers=0, device='cpu', branches=('uncond',), log=log)\n"
        "    print('torch.utils.tensorboard' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["False", "True"], res.stdout


def test_a_missing_tensorboard_is_one_line_before_the_run_folder(caches, tmp_path, monkeypatch):
    cache, _ = caches
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` raises ImportError
    args = ["train", "--cache", str(cache), "--out", str(tmp_path / "run"), "--log", "tensorboard"]
    res = CliRunner().invoke(app, [*args, "--iters", "1", "--device", "cpu", "--read-threads", "0"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    (line,) = [x for x in res.output.splitlines() if x.startswith("error:")]
    assert "pip install 'diffseg[tensorboard]'" in line
    assert not (tmp_path / "run").exists()
