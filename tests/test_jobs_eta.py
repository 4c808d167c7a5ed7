"""core/jobs.py's progress line: the estimate of the time left covers every remaining job, the later
batches' named ones too, and the elapsed time runs over all batches (an injected clock: no sleeps)."""

from helpers import SMALL

from diffseg.cache.synthetic import make_cache
from diffseg.core.jobs import Job, JobPool
from diffseg.stages.demo.config import TARGETS, demo_config
from diffseg.stages.demo.job import RECIPE_CELLS, ablation_plans, later_jobs


class Clock:
    """A clock that moves only when a job says it took some seconds."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def work(self, seconds: float) -> float:
        self.now += seconds
        return seconds


def test_the_estimate_counts_the_jobs_of_later_batches(tmp_path):
    clock, lines = Clock(), []
    with JobPool(workers=1, cores=1, logs=tmp_path, echo=lines.append, clock=clock) as pool:
        first = [Job(f"extract-{k}", clock.work, dict(seconds=30)) for k in "ab"]
        pool.run(first, to_come=["train-1", "train-2", "pictures"])
        assert lines == [
            # extract-b (30 s) and three later jobs of kinds not seen yet (30 s each, the mean of all)
            "[1/2] extract-a: 30 s; elapsed 0:30, about 2:00 left",
            "[2/2] extract-b: 30 s; elapsed 1:00, about 1:30 left",
        ]
        pool.run([Job("train-1", clock.work, dict(seconds=10)), Job("train-2", clock.work, dict(seconds=10))])
    assert lines[2:] == [
        "[1/2] train-1: 10 s; elapsed 1:10, about 0:10 left",  # train-2 as the finished train job
        "[2/2] train-2: 10 s; elapsed 1:20",
    ]


def test_the_demo_names_its_second_batch_before_the_first_runs(tmp_path):
    """The names are those the ablation plans give their jobs once the caches exist."""
    cfg = demo_config("small")
    names = later_jobs(cfg)
    assert names[0] == "pictures" and len(names) == len(set(names))
    assert len(names) == 1 + (5 + 3) * len(cfg.seeds)  # pictures, Table IV's 5 cells and 3 recipe cells per seed
    caches = {t: make_cache(tmp_path / t, n=1, kind="eval", split=t, **SMALL) for t in TARGETS}
    train = make_cache(tmp_path / "train", n=1, **SMALL)
    caches |= {name: train for name in ("train", *(v for v, _, _, _ in RECIPE_CELLS.values() if v))}
    planned = ablation_plans(cfg, tmp_path, caches, "cpu", full_grid=False)
    jobs = [j.name for name, p in planned.items() for j in p.jobs(prefix=f"{name}-")]
    assert len(jobs) == len(names) - 1 and set(jobs) < set(names)
