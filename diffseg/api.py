"""The Python API's functions (`diffseg.extract`, `diffseg.train`, `diffseg.set_threads`): the jobs the
command line runs, taking the config objects it builds. Importing this module imports no torch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffseg.core import threads

if TYPE_CHECKING:
    from diffseg.stages.extract.config import ExtractConfig
    from diffseg.stages.train.config import TrainConfig


def set_threads(n: int | None = None) -> threads.ThreadSettings:
    """The CLI's CPU thread settings in this process: `n` intra-op threads (None: DIFFSEG_THREADS, else
    OMP_NUM_THREADS, else the cores this process may use) and sleeping idle OpenMP threads.

    Call it first, before anything imports torch, for the wait policy to count (OpenMP reads it when
    its pool starts); called later, it still sets torch's thread count. Not calling it leaves torch's
    own defaults: importing diffseg changes no thread setting."""
    return threads.apply(n)


def extract(config: ExtractConfig, *, dry_run: bool = False) -> dict | None:
    """Stage one (`diffseg extract`): write the feature cache `config` describes (its `out`, else the
    default folder); returns the run's summary, or with `dry_run` only the size report."""
    from diffseg.stages.extract import job

    return job.main(config, dry_run=dry_run)


def train(
    config: TrainConfig | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    allow_partial: bool = False,
    **options: Any,
) -> Path:
    """Stage two (`diffseg train`); returns the run folder.

    `options`: what `diffseg train` passes its job (stages/train/job.py `main`): `cache` and the
    TrainConfig fields given, plus `kinds`; left out, an option takes TrainConfig's default. `config`:
    a whole TrainConfig instead (e.g. a run's recorded one, `TrainConfig.from_dict(json["config"])`);
    `options` replace its fields."""
    from diffseg.stages.train import job

    given = {**(config.to_dict() if config is not None else {}), **options}
    if "cache" not in given:
        raise TypeError("diffseg.train: give a TrainConfig or cache=")
    cache = given.pop("cache")
    out = Path(out) if out is not None else None
    return job.main(cache=cache, out=out, resume=resume, allow_partial=allow_partial, **given)
