"""Stage one's unit of work: samples (load, view, both branches, write), overlapped (overlap.py).

The same `SampleRunner` serves the in-process loop and the dask workers. On a worker the
frozen model and the runner live in a process-local cache keyed by (model, device, dtype)
and by the plan, so each worker builds the model once, whatever the number of tasks.
A task writes its samples straight into the store and returns only small metadata.
A sample whose features hold NaN/inf fails alone (`finite`): computed again in float32 where the
plan runs in float16, and skipped (recorded with its reason) if still non-finite.
Features stay on the extraction device until the codec has encoded them there (`compute`, the U-Net's
thread): the copy to the host moves the stored parts only, and the writer's thread only writes.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Generator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffseg.core.errors import DataError
from diffseg.core.seeds import stable_seed
from diffseg.stages.extract.hashing import sample_digest
from diffseg.stages.extract.plan import ExtractPlan, plan_to_json
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
    reason: str | None = None  # why it was skipped; for a written sample, a warning (computed again in float32)
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
        models,
        plan.trajectory,
        classes=plan.classes,
        descriptions=plan.descriptions,
        uncond_prompt=plan.uncond_prompt,
        table=plan.class_table,
    )


class SampleRunner:
    """Computes and writes samples of one plan: `run_many(indices)` never writes a partial sample."""

    def __init__(self, plan: ExtractPlan, models, writer=None, dataset=None, extractor=None):
        self.plan, self.models, self._writer = plan, models, writer
        self.dataset = dataset if dataset is not None else open_plan_dataset(plan)
        self.extractor = extractor if extractor is not None else make_extractor(plan, models)
        self._fp32: SampleRunner | None = None  # float32 twin of a float16 plan, built on the first retry

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

    def batch_features(self, items: list[Prepared]) -> list[dict[str, torch.Tensor]]:
        """Per sample {"<branch>/<layer>": float16 [S, C, h, w] on the device} for every planned branch. The
        uncond branch runs the samples in one U-Net call per step (--unet-batch; each keeps its
        own noise, seeded from its pixels and view), the cond branch one image at a time."""
        per: list[dict] = [{} for _ in items]
        if self.plan.joint_branches:  # both branches' rows of a step in one U-Net call (--joint-branches)
            images, labels = np.stack([it.image for it in items]), np.stack([it.label for it in items])
            latents = torch.cat([it.latent for it in items])
            sids, views = [it.sid for it in items], [it.view for it in items]
            joint = self.extractor.joint(images, labels, sids, views, latents, host=False)
            for branch in self.plan.branches:
                for b, arrays in enumerate(per):
                    for layer in self.plan.branch_layers(branch):
                        arrays[f"{branch}/{layer}"] = joint[branch][layer][b]
            return per
        for branch in self.plan.branches:
            if branch == "cond":
                outs = [self.extractor.cond(it.image, it.label, it.sid, it.view, it.latent, host=False) for it in items]
            elif len(items) == 1:
                outs = [self.extractor.uncond(items[0].image, items[0].sid, items[0].view, items[0].latent, host=False)]
            else:
                images = np.stack([it.image for it in items])
                sids, views = [it.sid for it in items], [it.view for it in items]
                latents = torch.cat([it.latent for it in items])
                batched = self.extractor.uncond_batch(images, sids, views, latents, host=False)
                outs = [{k: v[b] for k, v in batched.items()} for b in range(len(items))]
            for arrays, out in zip(per, outs):
                for layer in self.plan.branch_layers(branch):
                    arrays[f"{branch}/{layer}"] = out[layer]
        return per

    # -- the three steps of a sample (overlap.py runs them in three threads) -----------------------
    def prepare(self, i: int) -> Prepared | Outcome:
        """Read, decode and view sample i, hash its source and VAE-encode its view; a bad sample ->
        its Outcome."""
        t0 = time.perf_counter()
        try:
            sample = self.dataset.load(i // self.plan.views)
            sid, image, label, orig = self.view(i, sample)
        except DataError as err:  # a bad sample: reported to the coordinator, never silent
            reason = skip_reason(err, self.dataset.root)
            return Outcome(index=i, id=self.ids[i], written=False, reason=reason, seconds=time.perf_counter() - t0)
        digest = sample_digest(sample.image, sample.label)
        view = i % self.plan.views
        latent = self.extractor.latent(image, view)  # the VAE here too: off the U-Net's thread
        return Prepared(
            index=i, sid=sid, image=image, label=label, orig=orig, digest=digest, view=view, latent=latent, t0=t0
        )

    def compute(self, batch: list[Prepared | Outcome], wanted) -> tuple[list[tuple], bool]:
        """One batch (the samples of one i // batch_size) -> ([(item, arrays or None)] to write, in
        index order, only the `wanted` ones; go on?). Its good members are computed together
        whether wanted or not (a batch's members decide its bytes); --strict ends at a bad one.
        The arrays come encoded by the cache's codecs (on the device, then copied: writer.encoder)."""
        good = [it for it in batch if isinstance(it, Prepared)]
        arrays: dict[int, dict | None] = {}
        if good:
            arrays.update(zip([it.index for it in good], self.batch_features(good)))
        pairs: list[tuple] = []
        for it in batch:
            if it.index not in wanted:
                continue
            if isinstance(it, Prepared):
                it, arrays[it.index] = self.finite(it, arrays[it.index] or {})
                if arrays[it.index] is not None:
                    arrays[it.index] = self.writer.encoder(arrays[it.index])
            pairs.append((it, arrays.get(it.index)))
            if isinstance(it, Outcome) and self.plan.strict:
                return pairs, False
        return pairs, True

    def finite(self, item: Prepared, arrays: dict) -> tuple[Prepared | Outcome, dict | None]:
        """(item, arrays) when every feature is finite; else the sample alone computed again in float32
        (a float16 plan: the U-Net's overflow is the likely cause) and, still non-finite, (its
        Outcome, None): skipped with the reason, the extraction goes on."""
        bad = _nonfinite(arrays)
        if bad is None:
            return item, arrays
        tried = self.plan.compute_dtype
        if tried != "float32":
            twin = self._float32()
            again = dataclasses.replace(item, latent=twin.extractor.latent(item.image, item.view))
            arrays = twin.batch_features([again])[0]
            if _nonfinite(arrays) is None:
                return dataclasses.replace(
                    item, note=f"non-finite features in {tried} ({bad}): computed in float32"
                ), arrays
            bad, tried = _nonfinite(arrays), f"{tried} and float32"
        reason = f"non-finite features in {tried} ({bad})"
        return Outcome(index=item.index, id=item.sid, written=False, reason=reason), None

    def _float32(self) -> SampleRunner:
        if self._fp32 is None:
            plan = dataclasses.replace(self.plan, compute_dtype="float32")
            self._fp32 = SampleRunner(plan, models_for(plan), writer=self._writer, dataset=self.dataset)
        return self._fp32

    def write(self, item: Prepared | Outcome, arrays) -> Outcome:
        """Write a computed sample (status last), or mark a bad one skipped (unless --strict)."""
        if isinstance(item, Outcome):
            if not self.plan.strict:
                self.writer.mark_skipped(item.index)
            return item
        self.writer.write_sample(item.index, arrays, item.label, item.orig, item.digest)
        seconds = time.perf_counter() - item.t0
        return Outcome(index=item.index, id=item.sid, written=True, reason=item.note, seconds=seconds)

    def run_many(self, indices: list[int]) -> Generator[Outcome, None, None]:
        """Extract and write the samples `indices` (sorted), one Outcome each in order, overlapping
        the reads and writes with the U-Net (overlap.py). Batches are aligned to absolute indices
        (sample i is in batch i // batch_size), so a batch's members never depend on which samples
        are pending: the complete members of a partly pending batch are recomputed, not written."""
        from diffseg.stages.extract import overlap

        n, size = len(self.ids), self.plan.batch_size
        wanted = set(indices)
        members = sorted({j for i in wanted for j in range(i // size * size, min(i // size * size + size, n))})
        return overlap.run(
            members,
            self.prepare,
            lambda batch: self.compute(batch, wanted),
            self.write,
            key=lambda it: it.index // size,
            depth=size,
            overlap=self.plan.overlap,
        )


def _nonfinite(arrays: dict) -> str | None:
    """ "<name>: k NaN/inf of n" for the first array (numpy, or a tensor on any device) holding any, else None."""
    from diffseg.cache.writer import nonfinite

    for name, a in arrays.items():
        if isinstance(a, torch.Tensor):  # on the CPU: numpy's fast float16 check on the same memory
            bad = nonfinite(a.numpy()) if a.device.type == "cpu" else a.numel() - int(torch.isfinite(a).sum())
        else:
            bad = nonfinite(a)
        if bad:
            return f"{name}: {bad} NaN/inf of {a.numel() if isinstance(a, torch.Tensor) else a.size}"
    return None


@dataclass(frozen=True, kw_only=True)
class Prepared:
    """A sample ready for the U-Net: its view, labels and source digest."""

    index: int
    sid: str
    image: np.ndarray  # uint8 [H, W, 3]
    label: np.ndarray  # uint8 [H, W]
    orig: np.ndarray | None  # evaluation caches: the original label
    digest: np.ndarray | None
    view: int
    latent: torch.Tensor  # [1, 4, H/8, W/8]: its VAE latent, shared by both branches
    t0: float  # when its preparation began (Outcome.seconds)
    note: str | None = None  # written, but computed again in float32 (SampleRunner.finite)


def skip_reason(err: DataError, root) -> str:
    """Why a sample is skipped, its paths relative to the dataset root: the reason is kept in the
    cache's record, which travels with the cache to machines where the extracting machine's
    folders mean nothing (and name a user's home)."""
    reason = str(err)
    if root is None:
        return reason
    for prefix in sorted({str(root), str(Path(root).resolve())}, key=len, reverse=True):
        reason = reason.replace(prefix.rstrip("/") + "/", "")
    return reason


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


def run_block(plan: ExtractPlan, indices: list[int], torch_threads: int | None) -> tuple[list[Outcome], float]:
    """A dask task: extract and write a contiguous block of samples; stops at a bad one if strict.
    -> (one Outcome per sample, the block's wall seconds). Samples already complete (written by a
    failed try of this block, which dask retries) are not computed again: their Outcome says written."""
    from diffseg.cache import schema

    _set_threads(torch_threads)
    t0 = time.perf_counter()
    outcomes = []
    with _LOCK:
        runner = runner_for(plan)
        status = runner.writer.status()
        done = {i for i in indices if status[i] == schema.COMPLETE}
        outcomes = [Outcome(index=i, id=runner.ids[i], written=True) for i in sorted(done)]
        with closing(runner.run_many([i for i in indices if i not in done])) as outs:
            for out in outs:
                outcomes.append(out)
                if not out.written and plan.strict:
                    break
    return sorted(outcomes, key=lambda o: o.index), time.perf_counter() - t0
