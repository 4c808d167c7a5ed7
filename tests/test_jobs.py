"""core/jobs.py: jobs in spawned worker processes, in dependency order, output in per-job logs,
failures named with their log; and `ablate --jobs 2` gives the tables of `--jobs 1`."""

import csv
import os
import signal
import time
from pathlib import Path

import pytest

from diffseg.core.errors import DiffsegError
from diffseg.core.jobs import Job, JobPool, run_jobs


def stamp(folder: str, name: str, wait_for: str | None = None, hold: float = 0.0) -> dict:
    """Touch <name>.start, then <name>.end when done; say something on stdout and stderr (fd-level too).
    With `wait_for`, go on only once that job has started too (a barrier: two jobs that wait for each
    other have run at once, however slow a start); with `hold`, stay that long (a job a failure must
    stop). -> which jobs had ended when this one started, and the worker's settings."""
    ended = sorted(p.stem for p in Path(folder).glob("*.end"))
    Path(folder, f"{name}.start").touch()
    if wait_for:
        _after_start(folder, wait_for)
    print(f"hello from {name}")
    os.write(2, f"fd2 of {name}\n".encode())
    time.sleep(hold)
    Path(folder, f"{name}.end").touch()
    import torch  # after the worker set its thread count

    return {
        "pid": os.getpid(),
        "threads": torch.get_num_threads(),
        "policy": os.environ.get("OMP_WAIT_POLICY"),
        "ended_before": ended,
    }


def _after_start(folder: str, name: str, timeout: float = 300.0) -> None:
    """Wait until job `name` has started; a job that never starts fails the waiting one (no hang)."""
    deadline = time.monotonic() + timeout
    while not Path(folder, f"{name}.start").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {name} did not start within {timeout:.0f} s")
        time.sleep(0.01)


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


def test_jobs_run_side_by_side_after_what_they_need(tmp_path):
    f = str(tmp_path)
    jobs = [
        Job("c", stamp, dict(folder=f, name="c"), after=("a", "b")),
        Job("a", stamp, dict(folder=f, name="a", wait_for="b")),  # a and b wait for each other: they
        Job("b", stamp, dict(folder=f, name="b", wait_for="a")),  # finish only if they run at once
    ]
    lines = []
    done = run_jobs(jobs, workers=2, cores=2, logs=tmp_path / "logs", echo=lines.append)
    assert set(done) == {"a", "b", "c"}
    assert done["a"].result["ended_before"] == done["b"].result["ended_before"] == []
    assert done["c"].result["ended_before"] == ["a", "b"]  # c waited for both
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
    assert done["a"].result["ended_before"] == [] and done["b"].result["ended_before"] == ["a"]
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
        Job("slow", stamp, dict(folder=f, name="slow", hold=60, wait_for="bad")),
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
        # each batch's two jobs wait for each other: both workers serve both batches
        first = pool.run([Job(f"a{i}", stamp, dict(folder=f, name=f"a{i}", wait_for=f"a{1 - i}")) for i in range(2)])
        second = pool.run([Job(f"b{i}", stamp, dict(folder=f, name=f"b{i}", wait_for=f"b{1 - i}")) for i in range(2)])
    pids = {d.result["pid"] for d in first.values()}
    assert len(pids) == 2 and {d.result["pid"] for d in second.values()} == pids


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
