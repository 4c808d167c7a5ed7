"""Checkpoints that survive damage: checksums checked on resume, the newest two kept (a bad newest
one falls back to the one before it, to the same final weights), a full disk is one line, files
get the umask's mode, and a resumed run logs each iteration once."""

import errno
import json
import os
import stat
from pathlib import Path

import pytest
from helpers import FAST_TRAIN, SMALL
from safetensors.torch import load_file
from typer.testing import CliRunner

from diffseg.cache.synthetic import make_cache
from diffseg.cli import app
from diffseg.core.atomic import UMASK
from diffseg.core.errors import DiffsegError
from diffseg.stages.runs.record import load_segmentor, read_run
from diffseg.stages.train import checkpoint
from diffseg.stages.train import job as train
from diffseg.stages.train.retention import to_drop

KW = {**FAST_TRAIN, "iters": 6, "ckpt_every": 2}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A cache and the weights of an uninterrupted 6-iteration run on it."""
    root = tmp_path_factory.mktemp("ckpt")
    cache = make_cache(root / "gtav", n=5, **SMALL)
    full = train.main(cache=cache, out=root / "full", **KW)
    return cache, load_file(full / checkpoint.FINAL)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def _flip(path: Path, offset_from_end: int) -> None:
    """Two bytes of the file, inverted (far from the header: the file still parses)."""
    data = bytearray(path.read_bytes())
    for k in (offset_from_end, offset_from_end + 1):
        data[-k] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize(
    "damage",
    [
        lambda run: _flip(run / "checkpoints/iter_0000004.safetensors", 8),
        lambda run: _truncate(run / "checkpoints/iter_0000004.state.pt"),
        lambda run: (run / "checkpoints/iter_0000004.safetensors").unlink(),
    ],
    ids=["flipped_weights", "truncated_state", "deleted_weights"],
)
def test_a_damaged_newest_checkpoint_falls_back_to_the_same_final_weights(reference, tmp_path, capsys, damage):
    cache, want = reference
    run = train.main(cache=cache, out=tmp_path / "run", stop_at=4, **KW)
    assert [it for it, _ in checkpoint.list_checkpoints(run)] == [2, 4]
    damage(run)
    capsys.readouterr()
    train.main(cache=cache, out=run, resume=True, **KW)
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "iter_0000004" in warnings[0] and "falling back to iteration 2" in warnings[0]
    assert "resuming" in err and "at iteration 2" in err
    assert _same(load_file(run / checkpoint.FINAL), want)
    iters = [json.loads(line)["iter"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert iters == [1, 2, 3, 4, 5, 6]  # the lines of iterations 3-4 were logged again: one copy kept


def test_predict_and_eval_skip_a_damaged_newest_checkpoint(reference, tmp_path, capsys):
    cache, _ = reference
    run = train.main(cache=cache, out=tmp_path / "run", stop_at=4, **KW)
    _flip(run / "checkpoints/iter_0000004.safetensors", 8)
    _, which = load_segmentor(read_run(run), "cpu")
    assert which == "checkpoint at iteration 2" and "iter_0000004.safetensors" in capsys.readouterr().err
    _truncate(run / "checkpoints/iter_0000002.safetensors")
    with pytest.raises(DiffsegError, match="no usable weights"):
        load_segmentor(read_run(run), "cpu")


class Kill(BaseException):
    """Stands in for a SIGKILL (nothing catches it)."""


def test_a_kill_after_the_last_checkpoint_logs_each_iteration_once(reference, tmp_path, monkeypatch):
    cache, want = reference
    real = checkpoint.save_checkpoint

    def killed_at_4(run_dir, iteration, *a, **k):  # iterations 3 and 4 are logged, their checkpoint is not
        if iteration == 4:
            raise Kill
        return real(run_dir, iteration, *a, **k)

    monkeypatch.setattr(checkpoint, "save_checkpoint", killed_at_4)
    with pytest.raises(Kill):
        train.main(cache=cache, out=tmp_path / "run", **KW)
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
        f.write('{"iter": 5, "tot')  # a line cut off by the kill
    monkeypatch.undo()
    train.main(cache=cache, out=tmp_path / "run", resume=True, **KW)
    iters = [json.loads(line)["iter"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert iters == [1, 2, 3, 4, 5, 6]
    assert _same(load_file(tmp_path / "run" / checkpoint.FINAL), want)


@pytest.mark.parametrize("where", ["weights", "state"])
def test_a_full_disk_during_a_checkpoint_is_one_line_and_leaves_no_temporary(tmp_path, monkeypatch, where):
    cache = make_cache(tmp_path / "gtav", n=3, **SMALL)
    real_save_file, real_save = checkpoint.save_file, checkpoint.torch.save

    def no_space(write):
        def partial_then_enospc(obj, path, *a, **k):
            if "iter_0000002" not in str(path):
                return write(obj, path, *a, **k)
            Path(path).write_bytes(b"half a file")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return partial_then_enospc

    if where == "weights":
        monkeypatch.setattr(checkpoint, "save_file", no_space(real_save_file))
    else:
        monkeypatch.setattr(checkpoint.torch, "save", no_space(real_save))
    args = ["train", "--cache", str(cache), "--out", str(tmp_path / "run"), "--iters", "3", "--ckpt-every", "1"]
    res = CliRunner().invoke(app, [*args, "--fusion", "light", "--workers", "0", "--device", "cpu", "--warmup", "0"])
    assert res.exit_code == 1
    (line,) = [x for x in res.output.splitlines() if x.startswith("error:")]
    assert "No space left on device" in line and "checkpoints" in line and "Traceback" not in res.output
    left = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert left == ["iter_0000001.safetensors", "iter_0000001.sha256", "iter_0000001.state.pt"]


def test_files_get_the_umask_mode(reference, tmp_path):
    cache, _ = reference
    run = train.main(cache=cache, out=tmp_path / "run", **{**KW, "iters": 2})
    mode = 0o666 & ~UMASK
    for p in [run / checkpoint.FINAL, *(run / "checkpoints").iterdir()]:
        assert stat.S_IMODE(p.stat().st_mode) == mode, p


def test_retention_keeps_the_newest_and_the_protected():
    assert to_drop([2, 4, 6, 8], keep=2) == [2, 4]
    assert to_drop([8, 2, 6, 4], keep=3, protect=[2]) == []
    assert to_drop([2], keep=2) == []
    with pytest.raises(DiffsegError, match="at least 2"):
        to_drop([2, 4], keep=1)
