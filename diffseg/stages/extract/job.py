"""Stage one, `diffseg extract`: run the frozen U-Net trajectory once per sample and write the
Zarr feature cache (docs/design/architecture.md "The feature cache", "Distributed extraction").

    1. plan      ExtractConfig -> ExtractPlan (defaults, validation)     config.py, plan.py
    2. size      bytes per sample from the U-Net config, free disk       sizes.py
    3. start     model build (in-process) or cluster + per-worker build  worker.py, cluster.py
    4. create    cache created, or an existing one checked and resumed   diffseg.cache
    5. extract   pending samples; bad ones skipped, recorded, counted    worker.py, overlap.py
    6. record    skipped samples, timings and host into the cache record

Progress and warnings go to stderr; the report (sizes, start-up, summary) to stdout.
"""

from __future__ import annotations

import platform
import socket
import sys
import time
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime

from diffseg.core.errors import CacheMismatch, DataError, DiffsegError
from diffseg.core.layers import LayerSpec, layer_specs
from diffseg.stages.extract import share, sizes
from diffseg.stages.extract.config import CONFIG_SUFFIX, ExtractConfig, file_text
from diffseg.stages.extract.plan import ExtractPlan, build_plan, extract_record, sample_ids
from diffseg.stages.extract.recipe import describe
from diffseg.stages.extract.worker import Outcome, open_plan_dataset


def main(config: ExtractConfig, *, dry_run: bool = False) -> dict | None:
    """Entry point of `diffseg extract`: run `config` (config.py), or with `dry_run` only size it."""
    plan = build_plan(config)
    if dry_run:
        return dry_run_report(plan)
    from diffseg.cache import store

    summary = run(plan)
    text = file_text(replace(config, out=plan.out)).encode()
    store.write_beside(plan.out, CONFIG_SUFFIX, text)  # the options, as a config file that extracts it again
    return summary


# 1-2. plan the samples and their size ------------------------------------------------------
class Samples:
    """The planned samples: ids, original label maximum (eval), what the store already holds."""

    def __init__(self, plan: ExtractPlan):
        self.dataset = open_plan_dataset(plan)
        n_images = len(self.dataset) if plan.limit is None else min(plan.limit, len(self.dataset))
        if n_images == 0:
            raise DiffsegError(f"{plan.dataset} {plan.split}: no samples found (root {self.dataset.root})")
        self.image_ids = list(self.dataset.ids[:n_images])
        self.ids = sample_ids(self.image_ids, plan.views)
        self.orig_max = orig_label_max(self.dataset, n_images) if plan.kind == "eval" else None
        self.done = existing_status(plan.out, len(self.ids))

    @property
    def remaining(self) -> int:
        return len(self.ids) - self.done


def orig_label_max(dataset, n_images: int) -> tuple[int, int]:
    """(Hmax, Wmax) over the label file headers; unreadable ones are reported when loaded."""
    hmax = wmax = 0
    for i in range(n_images):
        try:
            h, w = dataset.label_size(i)
        except DataError:  # the sample is skipped (or stops --strict) when ds.load(i) raises
            continue
        hmax, wmax = max(hmax, h), max(wmax, w)
    return (max(hmax, 1), max(wmax, 1))


def existing_status(out: str, n: int) -> int:
    """Samples already done (complete or skipped) in an existing cache at `out`, else 0."""
    from diffseg.cache import PENDING, CacheReader, is_cache

    if not is_cache(out):
        return 0

    status = CacheReader(out).status
    return int((status != PENDING).sum()) if len(status) == n else 0


def planned_specs(plan: ExtractPlan) -> dict[str, LayerSpec]:
    from diffseg.pipeline.models import unet_config

    return layer_specs(unet_config(plan.model), plan.trajectory.layers, plan.resolution, len(plan.classes))


def dry_run_report(plan: ExtractPlan) -> dict:
    """Print bytes per sample (per branch and layer), the total and the free disk; write nothing."""
    samples = Samples(plan)
    specs = planned_specs(plan)
    per = sizes.sample_bytes(plan, specs, samples.orig_max)
    free = sizes.free_bytes(plan.out)
    for line in describe(plan):
        print(line)
    for line in sizes.report_lines(plan, specs, per, len(samples.ids), samples.remaining, free):
        print(line)
    prices = sizes.codec_prices(plan, specs)
    for line in sizes.price_lines(prices, len(samples.ids)):
        print(line)
    fits = free is None or per["total"] * samples.remaining <= free
    print("dry run: nothing written" + ("" if fits else "; the disk is too small for this extraction"))
    return {
        "bytes_per_sample": per["total"],
        "total": per["total"] * len(samples.ids),
        "remaining": per["total"] * samples.remaining,
        "free": free,
        "samples": len(samples.ids),
        "codecs": {name: {"bytes_per_sample": b, "total": b * len(samples.ids)} for name, b in prices.items()},
    }


# 3-6. the run --------------------------------------------------------------------------------
def run(plan: ExtractPlan, models=None, progress: bool = True) -> dict:
    """Extract every pending sample of `plan`; -> summary dict. `models`: preloaded (benchmarks)."""
    t_begin = time.perf_counter()
    samples = Samples(plan)
    per = sizes.sample_bytes(plan, planned_specs(plan), samples.orig_max)
    sizes.check_disk(plan.out, per["total"], samples.remaining)  # before any write
    print(
        f"cache {plan.out}: {len(samples.ids)} samples, {sizes.human(per['total'])} per sample, "
        f"{samples.remaining} to extract ({sizes.human(per['total'] * samples.remaining)})"
    )
    with share.exclusive(plan.out, plan.shard) as lock:  # a second process on this share: refused
        if plan.workers is None and plan.scheduler is None:
            summary = _run_local(plan, samples, models, progress, lock)
        else:
            summary = _run_dask(plan, samples, progress, lock)
    summary["seconds_total"] = time.perf_counter() - t_begin
    return summary


def _model_info(models, extractor, plan: ExtractPlan) -> dict:
    """The record's model and layers from the loaded model (the authority on shapes)."""
    from diffseg.cache import ModelRecord

    model = ModelRecord(name=models.name, fingerprint=models.fingerprint, prediction_type=models.prediction_type)
    return {
        "model": model,
        "layers": extractor.layer_specs(resolution=plan.resolution),
        "attention_backend": extractor.attention_backend,
    }


def dataset_record(plan: ExtractPlan, info: dict):
    """The record's `dataset`; a label space other than Cityscapes' is recorded whole (its class table)."""
    from diffseg.cache import DatasetRecord
    from diffseg.cache.record import CUSTOM_SPACE
    from diffseg.core.classes import CITYSCAPES

    if plan.class_table == CITYSCAPES:
        return DatasetRecord(name=plan.dataset, split=plan.split, info=info)
    return DatasetRecord(
        name=plan.dataset, split=plan.split, info=info, label_space=CUSTOM_SPACE, classes=plan.class_table.to_dict()
    )


def create_cache(plan: ExtractPlan, samples: Samples, info: dict, shared: dict | None = None):
    """Create the store (or check and reopen it for resume): the run's first write. `shared`: the
    codec's fitted arrays (pca bases, `fit_codec`)."""
    from diffseg.cache import CacheRecord, CacheWriter

    record = CacheRecord(
        kind=plan.kind,
        model=info["model"],
        attention_backend=info["attention_backend"],
        dataset=dataset_record(plan, dict(getattr(samples.dataset, "info", {}) or {})),
        extract=extract_record(plan, samples.image_ids),
        layers={n: info["layers"][n] for n in plan.trajectory.layers},
        branches=plan.branches,
        resolution=plan.resolution,
        samples=len(samples.ids),
        codecs={"features": plan.codec},
    )
    with share.creating(plan.out):  # shards started together: one creates, the others resume
        refuse_old_scheme(plan.out)  # under the lock: another shard may be creating the group
        return CacheWriter.create(plan.out, record, samples.ids, orig_label_max=samples.orig_max, shared=shared)


class _IdsOnly:
    """A writer stand-in that only knows the sample ids: calibration runs before the cache exists
    and writes nothing."""

    def __init__(self, ids: list[str]):
        self.ids = ids


def fit_codec(plan: ExtractPlan, ids: list[str], models, extractor=None, dataset=None) -> dict | None:
    """The pca bases of `plan.codec`, fitted on its seeded calibration subset of the planned samples
    with this process's model, before any sample is written (None: no pca array, or the cache exists
    and keeps its own basis: a resume, another shard, a dask block never refits)."""
    import torch

    from diffseg.cache import is_cache
    from diffseg.cache.codecs import resolve
    from diffseg.cache.convert import fit_shared
    from diffseg.stages.extract.worker import Prepared, SampleRunner

    names = [f"{b}/{layer}" for b, layer in plan.array_names()]
    if all(c.name != "pca" for c in resolve(plan.codec, names).values()) or is_cache(plan.out):
        return None
    runner = SampleRunner(plan, models, writer=_IdsOnly(ids), dataset=dataset, extractor=extractor)

    def sample(i: int):
        prepared = runner.prepare(i)  # the extraction's own read, view and VAE encode
        if not isinstance(prepared, Prepared):  # a bad sample is skipped by the extraction too
            return None
        return {k: torch.as_tensor(v).cpu().numpy() for k, v in runner.batch_features([prepared])[0].items()}

    t0 = time.perf_counter()
    shared = fit_shared(plan.codec, names, len(ids), sample)
    print(f"codec {plan.codec}: basis fitted in {time.perf_counter() - t0:.1f} s")
    return shared


def refuse_old_scheme(out: str) -> None:
    """An existing cache written under another seeding scheme cannot be continued: its samples'
    noise came from their ids, new ones would come from their pixels (it still reads)."""
    from diffseg.cache import CacheReader, is_cache
    from diffseg.pipeline.seeding import SCHEME

    if not is_cache(out):
        return
    have = CacheReader(out).record.extract.seeding
    if have != SCHEME:
        raise CacheMismatch(
            f"{out} was extracted with seeding scheme {have!r} (an older diffseg); this version seeds with "
            f"{SCHEME!r} and cannot continue it: it still reads for train and eval; use another --out to re-extract"
        )


def _host(plan: ExtractPlan, workers: int | None) -> dict:
    import torch

    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": plan.device,
        "workers": workers,
        "scheduler": plan.scheduler,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }


class Recorder:
    """Coordinator side: progress bar, warnings, skip records in the attributes, counts."""

    def __init__(self, plan: ExtractPlan, writer, samples: Samples, progress: bool, lock=None):
        from tqdm import tqdm

        self.plan, self.writer, self.lock = plan, writer, lock
        self.skipped = list(writer.record.skipped)
        self.written = self.bad = 0
        self.bar = tqdm(
            total=len(samples.ids),
            initial=len(samples.ids) - len(writer.pending()),
            unit="sample",
            desc="extract",
            file=sys.stderr,
            disable=not progress,
            dynamic_ncols=True,
            smoothing=0.1,
        )
        self.t0 = time.perf_counter()

    def add(self, outcomes: list[Outcome]) -> None:
        from diffseg.cache import SkippedSample

        new_skips = []
        for out in outcomes:
            if out.written:
                self.written += 1
                if out.reason:
                    self.bar.write(f"warning: sample {out.id}: {out.reason}", file=sys.stderr)
                continue
            if self.plan.strict:
                self.bar.close()
                raise DiffsegError(f"bad sample {out.id}: {out.reason} (--strict stops at the first)")
            self.bad += 1
            self.bar.write(f"warning: skipped sample {out.id}: {out.reason}", file=sys.stderr)
            assert out.reason is not None  # an outcome not written says why
            new_skips.append(SkippedSample(id=out.id, reason=out.reason))
        if new_skips:
            self._record(skipped=new_skips)
        share.refresh(self.lock)
        self.bar.update(len(outcomes))

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()  # an error line then starts on a line of its own

    def _record(self, skipped=(), **changes) -> None:
        """Record fields, the skipped samples merged with those other shards recorded meanwhile."""
        from diffseg.cache import CacheReader

        with share.creating(self.plan.out):
            merged = list(CacheReader(self.plan.out).record.skipped) if self.plan.shard is not None else []
            known = {s.id for s in merged}
            for s in [*self.skipped, *skipped]:
                if s.id not in known:
                    merged.append(s)
                    known.add(s.id)
            self.skipped = merged
            self.writer.update_record(skipped=tuple(self.skipped), **changes)

    def finish(self, startup: dict, workers: int | None) -> dict:
        self.bar.close()
        seconds = time.perf_counter() - self.t0
        rate = self.written / seconds if seconds > 0 else 0.0
        timings = {
            **startup,
            "extract_s": round(seconds, 3),
            "samples_per_s": round(rate, 4),
            "samples_written": self.written,
        }
        self._record(timings=timings, host=_host(self.plan, workers))
        from diffseg.cache import stored_bytes

        nbytes = stored_bytes(self.plan.out)
        print(
            f"done: {self.written} samples written, {self.bad} skipped this run "
            f"({len(self.skipped)} skipped in the cache), {seconds:.1f} s, {rate:.3f} samples/s; "
            f"{self.plan.out}: {nbytes} bytes ({sizes.human(nbytes)})"
        )
        return {
            "written": self.written,
            "skipped": self.bad,
            "skipped_total": len(self.skipped),
            "extract_s": seconds,
            "samples_per_s": rate,
            "bytes": nbytes,
            "path": self.plan.out,
            **startup,
        }


def _run_local(plan: ExtractPlan, samples: Samples, models, progress: bool, lock=None) -> dict:
    """No cluster: build the model here and loop over pending samples."""
    from diffseg.stages.extract.worker import SampleRunner, make_extractor, models_for

    t0 = time.perf_counter()
    models = models if models is not None else models_for(plan)
    extractor = make_extractor(plan, models)
    startup = {"model_s": round(time.perf_counter() - t0, 3)}
    print(f"start-up: model {startup['model_s']:.1f} s (excluded from samples/s)")
    shared = fit_codec(plan, samples.ids, models, extractor, samples.dataset)
    writer = create_cache(plan, samples, _model_info(models, extractor, plan), shared)
    runner = SampleRunner(plan, models, writer, dataset=samples.dataset, extractor=extractor)
    with Recorder(plan, writer, samples, progress, lock) as rec:
        pending = share.shard_indices(writer.pending(), writer.n, plan.shard, plan.batch_size)
        with closing(runner.run_many(pending)) as outcomes:  # closed at once when add() raises (--strict)
            for out in outcomes:
                rec.add([out])
        return rec.finish(startup, None)


def _run_dask(plan: ExtractPlan, samples: Samples, progress: bool, lock=None) -> dict:
    """Local cluster or an existing scheduler: blocks of samples, written by the workers."""
    from diffseg.stages.extract import cluster as xd

    with xd.client_for(plan) as (client, threads, cluster_s):
        n = xd.n_workers(client)
        models_s = xd.warm_workers(client, plan, threads)
        info = client.submit(worker_model_info, plan, pure=False).result()
        startup = {"cluster_s": round(cluster_s, 3), "model_s": round(models_s, 3)}
        print(
            f"start-up: cluster {cluster_s:.1f} s ({n} workers, {threads or 'default'} torch threads each), "
            f"model on every worker {models_s:.1f} s (excluded from samples/s)"
        )
        shared = client.submit(worker_fit_codec, plan, samples.ids, pure=False).result()
        writer = create_cache(plan, samples, info, shared)
        with Recorder(plan, writer, samples, progress, lock) as rec:
            pending = share.shard_indices(writer.pending(), writer.n, plan.shard, plan.batch_size)
            for outcomes in xd.run_blocks(client, plan, pending, threads):
                rec.add(outcomes)
            return rec.finish(startup, n)


def worker_model_info(plan: ExtractPlan) -> dict:
    """Model attributes and layer specs, computed on a worker (the coordinator loads no model)."""
    from diffseg.stages.extract.worker import runner_for

    runner = runner_for(plan)
    return _model_info(runner.models, runner.extractor, plan)


def worker_fit_codec(plan: ExtractPlan, ids: list[str]) -> dict | None:
    """`fit_codec` on a worker (the coordinator loads no model)."""
    from diffseg.stages.extract.worker import runner_for

    runner = runner_for(plan)
    return fit_codec(plan, ids, runner.models, runner.extractor, runner.dataset)
