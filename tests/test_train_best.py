"""Checkpoints worth keeping: `--keep-checkpoints N` (at least 2) and `--save-best TARGET` (the weights of
the best evaluation on one target, with its iteration and score in best.json), both exact across a resume."""

import json

import pytest
from helpers import FAST_TRAIN, learnable_caches
from safetensors.torch import load_file
from typer.testing import CliRunner

from diffseg.cli import app
from diffseg.core.errors import DiffsegError
from diffseg.stages.train import best as best_module
from diffseg.stages.train import checkpoint
from diffseg.stages.train import job as train
from diffseg.stages.train.best import BEST, BEST_WEIGHTS

KW = {**FAST_TRAIN, "iters": 8, "ckpt_every": 2, "eval_every": 1, "branches": ("uncond",), "lr": 3e-3}


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    return learnable_caches(tmp_path_factory.mktemp("best"), n_train=5, n_eval=2)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def _evals(run) -> dict[int, float]:
    return {
        json.loads(p.read_text())["iteration"]: json.loads(p.read_text())["miou"] for p in (run / "eval").glob("*.json")
    }


def test_the_best_evaluation_is_kept_with_its_iteration_and_score(caches, tmp_path):
    cache, ev = caches
    run = train.main(cache=cache, out=tmp_path / "run", eval_caches=[ev], save_best="cs", keep_checkpoints=3, **KW)
    best = json.loads((run / BEST).read_text())
    scores = _evals(run)
    first_max = min(it for it, m in scores.items() if m == max(scores.values()))
    assert best["iteration"] == first_max and best["miou"] == scores[first_max] and best["target"] == "cs"
    assert [it for it, _ in checkpoint.list_checkpoints(run)] == [4, 6, 8]  # three kept, not two


# Scores that peak at iteration 3, before the interruption at 5: only the record in the checkpoint knows it.
SCRIPT = {1: 0.1, 2: 0.3, 3: 0.6, 4: 0.2, 5: 0.5, 6: 0.4, 7: 0.6, 8: 0.5}


def test_a_resumed_run_ends_with_the_same_best_record_and_bytes(caches, tmp_path, monkeypatch):
    cache, ev = caches
    monkeypatch.setattr(best_module, "target_miou", lambda report, target: SCRIPT[report["iteration"]])
    opts = dict(KW, eval_caches=[ev], save_best=ev, keep_checkpoints=3)
    full = train.main(cache=cache, out=tmp_path / "full", **opts)
    assert json.loads((full / BEST).read_text())["iteration"] == 3  # the first of the two 0.6
    part = train.main(cache=cache, out=tmp_path / "part", stop_at=5, **opts)
    train.main(cache=cache, out=part, resume=True, **{k: v for k, v in opts.items() if k != "keep_checkpoints"})
    assert (part / BEST).read_text() == (full / BEST).read_text()
    assert _same(load_file(part / checkpoint.FINAL), load_file(full / checkpoint.FINAL))
    assert _same(load_file(part / BEST_WEIGHTS), load_file(full / BEST_WEIGHTS))
    assert [it for it, _ in checkpoint.list_checkpoints(part)] == [5, 6, 8]  # the recorded number kept


def test_save_best_names_an_evaluation_target(caches, tmp_path):
    cache, ev = caches
    with pytest.raises(DiffsegError, match="--save-best nowhere: not an evaluation target.*cs"):
        train.main(cache=cache, out=tmp_path / "run", eval_caches=[ev], save_best="nowhere", **KW)


def test_keeping_one_checkpoint_is_refused_in_one_line(caches, tmp_path):
    cache, _ = caches
    res = CliRunner().invoke(
        app, ["train", "--cache", str(cache), "--out", str(tmp_path / "r"), "--keep-checkpoints", "1"]
    )
    assert res.exit_code == 1 and "Traceback" not in res.output
    (line,) = [x for x in res.output.splitlines() if x.startswith("error:")]
    assert "--keep-checkpoints 1" in line and "at least 2" in line
