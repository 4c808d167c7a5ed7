"""Run folders: claimed exclusively (runs started together never share one), given back when a run
fails before writing anything; a resume against a changed training cache names what changed."""

import json
import multiprocessing
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import FAST_TRAIN, SMALL

from diffseg.cache.synthetic import make_cache
from diffseg.core.errors import DiffsegError
from diffseg.stages.runs import files
from diffseg.stages.train import job as train

RACERS = 6
FROZEN = Path("runs/gtav-20260101-000000")  # every racer starts in the same second


def _claim(out, barrier, results):
    barrier.wait()  # all at once
    try:
        results.put(str(files.create_run(out or FROZEN, {"racer": os.getpid()}, explicit=out is not None)))
    except DiffsegError as err:
        results.put(f"refused: {err}")
    except Exception as err:  # reported, so the test fails instead of waiting for an answer
        results.put(f"failed: {err!r}")


def _race(kind: str, out) -> list[str]:
    if kind == "processes":
        ctx = multiprocessing.get_context("fork")  # the children inherit the frozen clock
        barrier, results = ctx.Barrier(RACERS), ctx.Queue()
        procs = [ctx.Process(target=_claim, args=(out, barrier, results)) for _ in range(RACERS)]
        for p in procs:
            p.start()
        got = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join()
        return got
    import queue

    tbarrier, tresults = threading.Barrier(RACERS), queue.Queue()
    with ThreadPoolExecutor(RACERS) as pool:
        for _ in range(RACERS):
            pool.submit(_claim, out, tbarrier, tresults)
    return [tresults.get(timeout=60) for _ in range(RACERS)]


@pytest.mark.parametrize("kind", ["processes", "threads"])
def test_racing_default_names_get_one_folder_each(tmp_path, monkeypatch, kind):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(files, "default_run_dir", lambda cache, now=None: FROZEN)
    (tmp_path / FROZEN).mkdir(parents=True)  # an empty folder of that name: free
    got = _race(kind, None)
    assert sorted(got) == sorted([str(FROZEN)] + [f"{FROZEN}-{k}" for k in range(2, RACERS + 1)])
    racers = {json.loads((Path(p) / "config.json").read_text())["racer"] for p in got}
    assert len(racers) == (RACERS if kind == "processes" else 1)  # each folder's record is its creator's
    assert not list(tmp_path.rglob("*.partial"))


@pytest.mark.parametrize("kind", ["processes", "threads"])
def test_racing_for_one_explicit_out_one_wins(tmp_path, kind):
    (tmp_path / "run").mkdir()  # an empty folder is a valid --out
    got = _race(kind, tmp_path / "run")
    assert got.count(str(tmp_path / "run")) == 1
    assert sum("already exists" in g for g in got) == RACERS - 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json"]


def test_same_second_runs_keep_their_own_records_and_resume_takes_the_newest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(files, "default_run_dir", lambda cache, now=None: FROZEN)
    monkeypatch.setattr(train, "default_run_dir", lambda cache, now=None: FROZEN)
    cache = make_cache(tmp_path / "gtav", n=3, **SMALL)
    a = train.main(cache=cache, seed=1, **FAST_TRAIN)
    b = train.main(cache=cache, seed=2, stop_at=1, **FAST_TRAIN)
    assert (a, b) == (FROZEN, Path(f"{FROZEN}-2"))
    seeds = [json.loads((r / "config.json").read_text())["config"]["seed"] for r in (a, b)]
    assert seeds == [1, 2] and len((a / "metrics.jsonl").read_text().splitlines()) == 2
    parents = [train.main_seeds(cache=cache, seeds=(0,), **FAST_TRAIN) for _ in range(2)]  # `train --seeds`
    assert parents == [Path(f"{FROZEN}-3"), Path(f"{FROZEN}-4")] and all((p / "seeds.json").is_file() for p in parents)
    for k in range(5, 11):  # -10 sorts after -9 by number, not by text
        shutil.copytree(b, Path(f"{FROZEN}-{k}"))
    assert files.latest_run(cache) == Path(f"{FROZEN}-10")


def test_a_run_refused_before_its_records_leaves_no_trace(tmp_path):
    cache = make_cache(tmp_path / "gtav", n=3, **SMALL)
    other = make_cache(tmp_path / "ev", n=2, kind="eval", fingerprint="ab" * 8, **SMALL)
    with pytest.raises(DiffsegError, match="fingerprint"):
        train.main(cache=cache, out=tmp_path / "run", eval_caches=[other], **FAST_TRAIN)
    assert not (tmp_path / "run").exists()
    train.main(cache=cache, out=tmp_path / "run", **FAST_TRAIN)  # the same --out, once fixed
    assert (tmp_path / "run" / "weights.safetensors").is_file()


def test_resume_on_a_swapped_training_cache_names_what_changed(tmp_path):
    cache = make_cache(tmp_path / "gtav", n=3, **SMALL)
    ev = make_cache(tmp_path / "cs", n=2, kind="eval", dataset="cityscapes", branches=("uncond",), **SMALL)
    kw = {**FAST_TRAIN, "ckpt_every": 1}
    run = train.main(cache=cache, out=tmp_path / "run", eval_caches=[ev], stop_at=1, **kw)
    for change, named in [
        ({"fingerprint": "ab" * 8}, "model fingerprint was 5e5e5e5e5e5e5e5e (synthetic), now abababababababab"),
        ({"seed": 5}, "extract config's trajectory.seed was 0, now 5"),
    ]:
        shutil.rmtree(cache)
        make_cache(cache, n=3, **SMALL, **change)
        with pytest.raises(DiffsegError) as err:
            train.main(cache=cache, out=run, resume=True, **kw)
        assert f"{cache} changed since {run} started" in str(err.value) and named in str(err.value)
        assert str(ev) not in str(err.value)
