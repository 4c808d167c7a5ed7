"""Stage one's unit of work: one sample (load, view, both branches, write) and a block of them.

The same `SampleRunner` serves the in-process loop and the dask workers. On a worker the
frozen model and the runner live in a process-local cache keyed by (model, device, dtype)
and by the plan, so each worker builds the model once, whatever the number of tasks.
A task writes its samples straight into the store and returns only small metadata.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from diffseg.core.errors import DataError
from diffseg.stages.extract.hashing import sample_digest
from diffseg.stages.extract.plan import ExtractPlan, plan_to_json, stable_seed
from diffseg.stages.extract.views import eval_view, train_view

_MODELS: dict[tuple, object] = {}  # (model spec, device, dtype) -> FrozenModels
_RUNNERS: dict[str, SampleRunner] = {}  # plan json -> runner
_LOCK = threading.Lock()  # a worker with several threads runs one sample at a time


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What happened to one sample; small, so it is all a dask task returns."""

    index: int
    id: str
    written: bool  # False: a bad sample (reason set)
    reason: str | None = None
    seconds: float = 0.0


def open_plan_dataset(plan: ExtractPlan):
    from diffseg.data import open_dataset

    return open_dataset(
        plan.dataset,
        root=plan.root,
        split=plan.split,
        split_file=plan.split_file,
        mapillary_map=plan.mapillary_map,
        conditions=plan.conditions,
        demo_size=plan.resolution,
        seed=0,
    )


def models_for(plan: ExtractPlan):
    """The frozen models of this plan, built once per process."""
    from diffseg.pipeline.models import load_models

    key = (plan.model, plan.device, plan.compute_dtype)
    if key not in _MODELS:
        _MODELS[key] = load_models(plan.model, device=plan.device, dtype=getattr(torch, plan.compute_dtype))
    return _MODELS[key]


def make_extractor(plan: ExtractPlan, models):
    from diffseg.pipeline.extractor import FeatureExtractor

    return FeatureExtractor(
        models, plan.trajectory, classes=plan.classes, descriptions=plan.descriptions, uncond_prompt=plan.uncond_prompt
    )


class SampleRunner:
    """Computes and writes samples of one plan: `run(i) -> Outcome` never writes a partial sample."""

    def __init__(self, plan: ExtractPlan, models, writer=None, dataset=None, extractor=None):
        self.plan, self.models, self._writer = plan, models, writer
        self.dataset = dataset if dataset is not None else open_plan_dataset(plan)
        self.extractor = extractor if extractor is not None else make_extractor(plan, models)

    @property
    def writer(self):
        """The store, opened on first write (workers are warmed up before it is created)."""
        if self._writer is None:
            from diffseg.cache import CacheWriter

            self._writer = CacheWriter.open(self.plan.out)
        return self._writer

    @property
    def ids(self) -> list[str]:
        return self.writer.ids

    def view(self, i: int, sample=None):
        """(sample id, image [h, w, 3], label [h, w], original label or None) of cache index i
        (`sample`: its decoded source sample, when already loaded)."""
        sid = self.ids[i]
        sample = sample if sample is not None else self.dataset.load(i // self.plan.views)
        if self.plan.kind == "train":
            seed = self.plan.trajectory.seed
            gen = torch.Generator().manual_seed(stable_seed(seed, "view", sid))
            photo = (
                torch.Generator().manual_seed(stable_seed(seed, "photometric", sid)) if self.plan.photometric else None
            )
            image, label = train_view(
                sid, sample.image, sample.label, self.plan.scale, self.plan.resolution, gen, photometric_gen=photo
            )
            return sid, image, label, None
        image, label = eval_view(sid, sample.image, sample.label, self.plan.resolution)
        return sid, image, label, np.ascontiguousarray(sample.label)

    def features(self, sid: str, image: np.ndarray, label: np.ndarray, view: int = 0) -> dict[str, np.ndarray]:
        """{"<branch>/<layer>": float16 [S, C, h, w]} for every planned branch; `view`: the view
        index (part of the noise seeds, with the pixels' content)."""
        arrays = {}
        for branch in self.plan.branches:
            if branch == "cond":
                out = self.extractor.cond(image, label, sid, view)
            else:
                out = self.extractor.uncond(image, sid, view)
            for layer in self.plan.branch_layers(branch):
                arrays[f"{branch}/{layer}"] = out[layer]
        return arrays

    def run(self, i: int) -> Outcome:
        t0 = time.perf_counter()
        try:
            sample = self.dataset.load(i // self.plan.views)
            sid, image, label, orig = self.view(i, sample)
        except DataError as err:  # a bad sample: reported to the coordinator, never silent
            if not self.plan.strict:
                self.writer.mark_skipped(i)
            return Outcome(index=i, id=self.ids[i], written=False, reason=str(err), seconds=time.perf_counter() - t0)
        arrays = self.features(sid, image, label, i % self.plan.views)
        self.writer.write_sample(i, arrays, label, orig, sample_digest(sample.image, sample.label))
        return Outcome(index=i, id=sid, written=True, seconds=time.perf_counter() - t0)


def runner_for(plan: ExtractPlan) -> SampleRunner:
    """This process's runner of `plan` (model built and cache opened on first use)."""
    key = plan_to_json(plan)
    if key not in _RUNNERS:
        _RUNNERS[key] = SampleRunner(plan, models_for(plan))
    return _RUNNERS[key]


def _set_threads(torch_threads: int | None) -> None:
    """Pin torch's intra-op threads (local clusters); None keeps the worker's own setting."""
    if torch_threads is not None and torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)


def warm_up(plan: ExtractPlan, torch_threads: int | None) -> float:
    """Run on every worker before the first task: set threads, build the model; -> seconds."""
    t0 = time.perf_counter()
    _set_threads(torch_threads)
    with _LOCK:
        runner_for(plan)
    return time.perf_counter() - t0


def run_block(plan: ExtractPlan, indices: list[int], torch_threads: int | None) -> list[Outcome]:
    """A dask task: extract and write a contiguous block of samples; stops at a bad one if strict."""
    _set_threads(torch_threads)
    outcomes = []
    with _LOCK:
        runner = runner_for(plan)
        for i in indices:
            out = runner.run(i)
            outcomes.append(out)
            if not out.written and plan.strict:
                break
    return outcomes
