"""core/jobs.py: jobs in spawned worker processes, in dependency order, output in per-job logs,
failures named with their log; and `ablate --jobs 2` gives the tables of `--jobs 1`."""

import csv
import os
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from diffseg.core.errors import DiffsegError
from diffseg.core.jobs import Job, JobPool, run_jobs


def stamp(folder: str, name: str, seconds: float = 0.0, wait_for: str | None = None) -> dict:
    """Write <name>.start/.end time stamps; say something on stdout and stderr (fd-level too); with
    `wait_for`, sleep only once that job has started (both then run at once, however slow the start)."""
    Path(folder, f"{name}.start").write_text(repr(time.time()))
    if wait_for:
        _after_start(folder, wait_for)
    print(f"hello from {name}")
    os.write(2, f"fd2 of {name}\n".encode())
    time.sleep(seconds)
    Path(folder, f"{name}.end").write_text(repr(time.time()))
    import torch  # after the worker set its thread count

    return {"pid": os.getpid(), "threads": torch.get_num_threads(), "policy": os.environ.get("OMP_WAIT_POLICY")}


def _after_start(folder: str, name: str) -> None:
    """Wait until job `name` has started (so that failing now must stop a running job)."""
    for _ in range(6000):
        if Path(folder, f"{name}.start").exists():
            return
        time.sleep(0.05)


def user_error(folder: str, path: str) -> None:
    from diffseg.core.errors import DataError

    Path(folder, "bad.start").touch()
    _after_start(folder, "slow")
    raise DataError(path, "not a PNG")


def crash(folder: str) -> None:
    Path(folder, "bad.start").touch()
    _after_start(folder, "slow")
    raise RuntimeError("a bug")


def die(folder: str) -> None:
    Path(folder, "bad.start").touch()
    _after_start(folder, "slow")
    os.kill(os.getpid(), signal.SIGKILL)


def _times(folder: Path, name: str) -> tuple[float, float]:
    return float((folder / f"{name}.start").read_text()), float((folder / f"{name}.end").read_text())


def test_jobs_run_side_by_side_after_what_they_need(tmp_path):
    f = str(tmp_path)
    jobs = [
        Job("c", stamp, dict(folder=f, name="c"), after=("a", "b")),
        Job("a", stamp, dict(folder=f, name="a", seconds=1.5)),
        Job("b", stamp, dict(folder=f, name="b", seconds=1.5)),
    ]
    lines = []
    done = run_jobs(jobs, workers=2, cores=2, logs=tmp_path / "logs", echo=lines.append)
    assert set(done) == {"a", "b", "c"}
    (a0, a1), (b0, b1), (c0, _) = (_times(tmp_path, n) for n in "abc")
    assert max(a0, b0) < min(a1, b1)  # a and b overlapped
    assert c0 >= max(a1, b1)  # c waited for both
    assert {done[n].result["pid"] for n in "abc"} != {os.getpid()}
    assert all(done[n].result["threads"] == 1 and done[n].result["policy"] == "PASSIVE" for n in "abc")
    log = (tmp_path / "logs" / "a.log").read_text()
    assert "hello from a" in log and "fd2 of a" in log
    assert any(line.startswith("[3/3] c: ") for line in lines)


def test_one_worker_runs_here_in_dependency_order(tmp_path, capsys):
    f = str(tmp_path)
    jobs = [Job("b", stamp, dict(folder=f, name="b"), after=("a",)), Job("a", stamp, dict(folder=f, name="a"))]
    done = run_jobs(jobs, workers=1, cores=2, logs=tmp_path / "logs", echo=print)
    assert {d.result["pid"] for d in done.values()} == {os.getpid()}
    assert _times(tmp_path, "a")[1] <= _times(tmp_path, "b")[0]
    assert "hello from a" in capsys.readouterr().out and not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    ("fn", "kwargs", "expected"),
    [
        (user_error, dict(path="x/0001.png"), "bad failed: x/0001.png: not a PNG (log: "),
        (crash, {}, "bad failed: RuntimeError: a bug (traceback in "),
        (die, {}, "(killed: out of memory or a signal) while bad, slow ran"),
    ],
)
def test_a_failed_job_stops_the_others_and_names_its_log(tmp_path, fn, kwargs, expected):
    f = str(tmp_path)
    jobs = [
        Job("slow", stamp, dict(folder=f, name="slow", seconds=60, wait_for="bad")),
        Job("bad", fn, dict(folder=f, **kwargs)),  # fails once "slow" runs
        Job("never", stamp, dict(folder=f, name="never"), after=("slow",)),
    ]
    with pytest.raises(DiffsegError) as err:
        run_jobs(jobs, workers=2, cores=2, logs=tmp_path / "logs", echo=lambda line: None)
    assert expected in str(err.value) and ("bad.log" in str(err.value) or fn is die)
    # "slow" had started and was stopped, not waited for (it would have written slow.end); "never" never ran
    assert (tmp_path / "slow.start").exists() and not (tmp_path / "slow.end").exists()
    assert not (tmp_path / "never.start").exists()
    if fn is crash:
        assert "Traceback" in (tmp_path / "logs" / "bad.log").read_text()


def test_a_pool_serves_two_batches_with_the_same_workers(tmp_path):
    f = str(tmp_path)
    with JobPool(workers=2, cores=2, logs=tmp_path / "logs", echo=lambda line: None) as pool:
        first = pool.run([Job(f"a{i}", stamp, dict(folder=f, name=f"a{i}", seconds=0.3)) for i in range(2)])
        second = pool.run([Job(f"b{i}", stamp, dict(folder=f, name=f"b{i}", seconds=0.3)) for i in range(2)])
    pids = {d.result["pid"] for d in first.values()}
    assert {d.result["pid"] for d in second.values()} <= pids


def test_bad_job_lists_are_refused(tmp_path):
    with pytest.raises(AssertionError, match="cycle"):
        run_jobs([Job("a", crash, after=("b",)), Job("b", crash, after=("a",))], workers=2, cores=2, logs=tmp_path)
    with pytest.raises(AssertionError, match="unknown"):
        run_jobs([Job("a", crash, after=("z",))], workers=1, cores=2, logs=tmp_path)


def test_ablate_with_two_jobs_writes_the_tables_of_one(tmp_path):
    import torch

    from diffseg.cache.synthetic import make_cache, unet_geometry
    from diffseg.stages.ablate import job as ablate

    common = dict(
        resolution=(32, 32),
        layers=("up3.res0", "up3.res2"),
        save_steps=(1,),
        signal=2.0,
        block=8,
        unet=unet_geometry((4, 4, 4, 4)),
        labels="blocks",
        features="label",
    )
    train = make_cache(tmp_path / "train", n=2, **common)
    target = make_cache(tmp_path / "cs", n=1, kind="eval", dataset="cityscapes", split="val", **common)
    kw = dict(iters=2, batch_size=1, fusion="light", warmup=1, features=False, device="cpu", workers=0, seeds=(0, 1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two workers
    try:
        one = ablate.main(cache=train, eval_caches=[target], out=tmp_path / "one", **kw)
    finally:
        torch.set_num_threads(threads)
    two = ablate.main(cache=train, eval_caches=[target], out=tmp_path / "two", jobs=2, **kw)

    def rows(out: Path) -> list[dict]:
        with open(out / "ablation.csv") as f:
            return list(csv.DictReader(f))

    assert rows(one) == rows(two) and len(rows(two)) >= 5
    assert len(list((tmp_path / "two" / "logs").glob("*-seed1.log"))) == 5
