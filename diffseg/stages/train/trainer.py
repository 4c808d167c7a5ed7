"""The stage-two training loop (docs/design/method.md §6-8) over a feature cache.

One iteration: lr from the schedule; for each of `accum` micro-batches, both selected
branches through the shared Segmentor (one forward), the IPKL loss / accum, backward;
gradient clipping at `clip_norm`; AdamW step. Under torchrun the model is wrapped in
DDP and each rank takes its share of the global batch (sampling.py).

Exact resume: the sample order and the dropout masks are functions of (seed, stream
position), the lr a function of the iteration; the checkpoint holds the weights (BN
buffers included), the AdamW state, the RNG states and the iteration. So N iterations
in one go and N/2 + resume N/2 give the same weights (CPU, fixed seed).
"""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

import diffseg
from diffseg.cache import CacheReader, FeatureDataset
from diffseg.cache.loader import BatchLoader
from diffseg.core.errors import DiffsegError
from diffseg.nn import LossConfig, ipkl_loss
from diffseg.stages.device import autocast, autocast_dtype
from diffseg.stages.runs.files import (
    CACHES,
    METRICS,
    MetricsLog,
    cache_change,
    cache_fingerprint,
    create_run,
    read_json,
    trim_metrics,
    write_json,
)
from diffseg.stages.runs.model import build_segmentor
from diffseg.stages.runs.record import RunRecord, run_targets, score
from diffseg.stages.runs.usage import usage_of
from diffseg.stages.train import checkpoint, distributed
from diffseg.stages.train.best import Best, pick_target
from diffseg.stages.train.classstats import CLASS_STATS
from diffseg.stages.train.config import CONFIG_TOML, TrainConfig, recorded_part
from diffseg.stages.train.config import write_file as write_train_file
from diffseg.stages.train.curves import TensorBoard, check_log, open_curves, prediction_picture
from diffseg.stages.train.distributed import DistEnv, sync_batchnorm, sync_buffers
from diffseg.stages.train.order import build_order
from diffseg.stages.train.progress import Progress, Window
from diffseg.stages.train.sampling import MicroBatchSampler, dropout_seeds, flip_mask, micro_positions
from diffseg.stages.train.schedule import lr_factor, set_lr
from diffseg.stages.train.step import (
    BranchForward,
    flip_samples,
    nonfinite_samples,
    raise_nonfinite,
)

BRANCH_CODE = {"uncond": 0, "cond": 1}  # part of the dropout seed


class Trainer:
    """One run: data, model, optimizer, and the loop; rank 0 writes the run directory."""

    def __init__(
        self,
        cfg: TrainConfig,
        layer_specs: dict,
        run: Path,
        env: DistEnv,
        device: torch.device,
        fresh: bool,
        allow_partial: bool = False,
        explicit: bool = True,
    ):
        """`run`: the run folder; a fresh run creates it with its records (`explicit`: it was given,
        else it is a default name that moves on to the next free one when taken; runs/files.py)."""
        self.cfg, self.run, self.env, self.device = cfg, Path(run), env, device
        self.layer_specs = layer_specs
        # 1. data: every complete sample; pending ones refused unless allowed (usage.py), rank 0's view on every rank
        reader = CacheReader(cfg.cache)
        self.cache_record, self.ids = reader.record, reader.ids
        usage = distributed.broadcast(env, usage_of(reader) if env.main else None).check(allow_partial)
        steps = [int(t) for t in reader.save_steps]
        step_idx = [steps.index(t) for t in cfg.save_steps]
        self.data = FeatureDataset(
            cfg.cache, cfg.branches, cfg.layers, step_idx, in_memory=cfg.in_memory, encoded=True, indices=usage.indices
        )
        # coded arrays expand on the device after the copy; pca layers stay coefficients and the model folds
        # their basis into its first 1x1 maps (the same function, fewer bytes and MACs; nn/fusion.py)
        self.decode = self.data.decoder(device, fold=True)
        if len(self.data) == 0:
            raise DiffsegError(f"{cfg.cache} has no complete sample to train on")
        self.order, self.class_stats = build_order(cfg, reader, self.data.indices)
        # 2. model, loss, optimizer
        table = self.cache_record.dataset.class_table
        self.model = build_segmentor(layer_specs, len(cfg.save_steps), cfg.fusion, cfg.seed, table.num_classes)
        self.model = self.model.to(device)
        self.model.fusion.fold(
            {
                k: (torch.from_numpy(b).to(device), torch.from_numpy(m).to(device))
                for k, (b, m) in self.data.fold_bases().items()
            }
        )
        if cfg.sync_bn:
            self.model = sync_batchnorm(env, self.model, device)
        self.forward: BranchForward | DistributedDataParallel = BranchForward(self.model)
        if env.active:
            self.forward = DistributedDataParallel(
                self.forward, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.loss_cfg = LossConfig(
            w_cond=cfg.w_cond,
            w_uncond=cfg.w_uncond,
            w_cons=cfg.w_cons,
            consistency=cfg.consistency,
            detach_teacher=cfg.detach_teacher,
        )
        groups = self.model.param_groups()
        self.base_lrs = [cfg.lr, cfg.lr * cfg.head_lr_mult]
        self.optimizer = torch.optim.AdamW(
            [{"params": groups["fusion"], "lr": self.base_lrs[0]}, {"params": groups["head"], "lr": self.base_lrs[1]}],
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            fused=device.type in ("cpu", "cuda"),
        )  # fused: 7x faster on CPU
        self.amp_dtype = autocast_dtype(device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        # 3. evaluation targets (checked now: a mismatch fails before any training)
        self.train_fp = cache_fingerprint(cfg.cache, self.cache_record, self.ids)
        # the full extract config too, so predict/eval need not reopen the training cache (runs/record.py)
        train = {**self.train_fp, "extract": self.cache_record.extract.to_dict(), **usage.record()}
        if self.cache_record.dataset.classes is not None:  # a label space of its own (else Cityscapes' 19)
            train["classes"] = self.cache_record.dataset.classes
        self.record = RunRecord(path=self.run, cfg=cfg, layer_specs=layer_specs, train_cache=train)
        if not fresh:  # first: a changed training cache would otherwise be blamed on an evaluation cache
            self._check_same_cache()
        self.targets = run_targets(self.record, cfg.eval_caches, allow_partial)
        check_log(cfg.log)  # a missing package fails before the run folder is written
        best_target = pick_target(cfg.save_best, self.targets)
        self.best = Best(self.run, best_target, None) if best_target is not None else None
        # 4. run directory and starting point
        self.start = 0
        self.curves: TensorBoard | None = None  # `--log`: opened by fit on rank 0
        if fresh:
            self._write_records(explicit)
        else:
            self._restore()
            if env.main:  # the lines logged after that checkpoint come again: keep one copy
                trim_metrics(self.run / METRICS, self.start)

    # -- records ------------------------------------------------------------------------
    def _write_records(self, explicit: bool) -> None:
        if not self.env.main:
            return
        self.run = create_run(
            self.run,
            {
                "config": self.cfg.to_dict(),
                "layer_specs": self.layer_specs,
                "world_size": self.env.world,
                "global_batch": self.cfg.global_batch(self.env.world),
                "diffseg_version": diffseg.__version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "torch_version": torch.__version__,
            },
            explicit=explicit,
        )
        self.record = replace(self.record, path=self.run)
        if self.best is not None:  # the run folder may have moved on to the next free name
            self.best.run = self.run
        write_train_file(self.run / CONFIG_TOML, self.cfg)  # config.json's config as a rerunnable config file
        evals = [cache_fingerprint(r.path, r.record, r.ids) for r in (CacheReader(t.path) for t in self.targets)]
        write_json(self.run / CACHES, {"train": self.record.train_cache, "eval": evals})
        if self.class_stats is not None:
            write_json(self.run / CLASS_STATS, self.class_stats)

    def _check_same_cache(self) -> None:
        recorded = read_json(self.run / CACHES)["train"]
        change = cache_change(recorded, self.record.train_cache)
        if change is not None:
            raise DiffsegError(f"--resume: {self.cfg.cache} changed since {self.run} started: {change}")
        was, now = recorded.get("partial"), self.record.train_cache.get("partial")
        if was != now:  # a partial run resumes on the very samples it started with, or not at all
            raise DiffsegError(
                f"--resume: {self.run} started on {_samples(was)} of {self.cfg.cache}, which now has "
                f"{_samples(now)}: start a new run with --out"
            )

    def _restore(self) -> None:
        found = checkpoint.newest_usable(self.run, checkpoint.load_checkpoint, self._warn)
        if found is None:
            return  # interrupted before the first sound checkpoint: start over, same result
        _, (weights, state) = found
        recorded_stats = state["sampler"].get("class_stats")
        have_stats = self.class_stats["digest"] if self.class_stats else None
        if recorded_stats != have_stats:
            raise DiffsegError(
                f"--resume: the class statistics of {self.cfg.cache} differ from those {self.run} sampled "
                f"with ({recorded_stats} vs {have_stats})"
            )
        if state["global_batch"] != self.cfg.global_batch(self.env.world):
            raise DiffsegError(
                f"--resume: {self.run} ran with a global batch of {state['global_batch']} samples; "
                f"this launch gives {self.cfg.global_batch(self.env.world)} (world size "
                f"{self.env.world}): use the same number of processes"
            )
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and state["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.start = int(state["iteration"])
        if self.best is not None:  # a checkpoint written before --save-best existed holds none
            self.best.record = state.get("best")

    def _warn(self, line: str) -> None:
        if self.env.main:
            print(f"warning: {line}", file=sys.stderr, flush=True)

    def _resume_state(self, iteration: int) -> dict:
        return {
            "iteration": iteration,
            "optimizer": self.optimizer.state_dict(),
            "schedule": {"base_lrs": list(self.base_lrs), "iteration": iteration},
            "sampler": {
                "seed": self.cfg.seed,
                "position": iteration * self.cfg.global_batch(self.env.world),
                "rcs_temperature": self.cfg.rcs_temperature,
                "class_stats": self.class_stats["digest"] if self.class_stats else None,
            },
            "global_batch": self.cfg.global_batch(self.env.world),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            },
            "config": recorded_part(self.cfg),
            "best": self.best.record if self.best is not None else None,
        }

    # -- loop ---------------------------------------------------------------------------
    def _loader(self) -> BatchLoader:
        """This rank's micro-batches, in the sampler's order, read by `workers` threads."""
        cfg = self.cfg
        stop = cfg.iters if cfg.stop_at is None else min(cfg.stop_at, cfg.iters)
        sampler = MicroBatchSampler(
            len(self.data),
            seed=cfg.seed,
            batch=cfg.batch_size,
            accum=cfg.accum,
            rank=self.env.rank,
            world=self.env.world,
            start=self.start,
            stop=stop,
            order=self.order,
        )
        return BatchLoader(self.data, sampler, device=self.device, readers=cfg.workers)

    def fit(self) -> None:
        cfg, main = self.cfg, self.env.main
        stop = cfg.iters if cfg.stop_at is None else min(cfg.stop_at, cfg.iters)
        log = MetricsLog(self.run / METRICS) if main else None
        self.curves = open_curves(cfg.log, self.run, self.start) if main else None
        progress = Progress(cfg.iters, self.start, enabled=main)
        if self.start:
            progress.note(f"resuming {self.run} at iteration {self.start} with its recorded config")
        window = Window()
        batches = self._loader()
        self.model.train()
        try:
            for k in range(self.start, stop):
                terms, wait = self._iteration(k, batches)
                window.add(terms, cfg.global_batch(self.env.world), wait)
                done = k + 1
                rec = None
                if done % cfg.log_every == 0 or done == stop:
                    rec = window.record(done, [g["lr"] for g in self.optimizer.param_groups])
                    if log is not None:  # rank 0
                        log.write(rec)
                    if self.curves is not None:
                        self.curves.metrics(rec)
                    window.reset()
                progress.update(done, rec)
                # evaluation first: the checkpoint of this iteration then holds its best record (best.py)
                if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.iters:
                    self._evaluate(done, log, progress, final=False)
                if done % cfg.ckpt_every == 0 or done == stop:
                    self._checkpoint(done)
            if stop == cfg.iters:
                if main:
                    checkpoint.save_weights(self.model.state_dict(), self.run / checkpoint.FINAL)
                self._evaluate(cfg.iters, log, progress, final=True)
        finally:
            batches.close()  # reader threads joined, also when a step failed
            progress.close()
            if log is not None:
                log.close()
            if self.curves is not None:
                self.curves.close()

    def _iteration(self, k: int, batches) -> tuple[dict[str, float], float]:
        cfg = self.cfg
        set_lr(self.optimizer, self.base_lrs, lr_factor(k, iters=cfg.iters, warmup=cfg.warmup, ratio=cfg.warmup_ratio))
        self.optimizer.zero_grad(set_to_none=True)
        wait = 0.0
        sums: dict[str, float] = {}
        for a in range(cfg.accum):
            t0 = time.perf_counter()
            batch = next(batches)
            wait += time.perf_counter() - t0
            positions = micro_positions(
                k, a, batch=cfg.batch_size, accum=cfg.accum, rank=self.env.rank, world=self.env.world
            )
            terms = self._micro_step(batch, positions, sync=a == cfg.accum - 1)
            for key, v in terms.items():
                sums[key] = sums.get(key, 0.0) + v / cfg.accum
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return sums, wait

    def _micro_step(self, batch: dict, positions: range, sync: bool) -> dict[str, float]:
        ids = [self.ids[int(i)] for i in batch["index"]]
        feats = self.decode(batch["feats"])
        bad = nonfinite_samples(feats)
        if bad:
            raise_nonfinite(bad, ids, self.cfg.cache)
        labels_BHW = batch["label"].to(self.device, non_blocking=True)
        flips = flip_mask(positions, seed=self.cfg.seed, p=self.cfg.flip_features)
        feats, labels_BHW = flip_samples(feats, labels_BHW, flips)
        seeds = {b: dropout_seeds(positions, seed=self.cfg.seed, branch=BRANCH_CODE[b]) for b in feats}
        ddp = self.forward if isinstance(self.forward, DistributedDataParallel) else None  # wrapped iff env.active
        with ddp.no_sync() if ddp is not None and not sync else nullcontext():
            with autocast(self.device, self.amp_dtype):
                logits = self.forward(feats, seeds)
            logits = {b: x.float() for b, x in logits.items()}
            try:
                loss, terms = ipkl_loss(logits.get("cond"), logits.get("uncond"), labels_BHW, self.loss_cfg)
            except DiffsegError as err:
                raise DiffsegError(f"{err}; samples {', '.join(ids)} of {self.cfg.cache}") from err
            loss = loss / self.cfg.accum
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        return terms

    # -- checkpoints and evaluation -------------------------------------------------------
    def _checkpoint(self, iteration: int) -> None:
        if self.env.main:
            checkpoint.save_checkpoint(
                self.run,
                iteration,
                self.model.state_dict(),
                self._resume_state(iteration),
                keep=self.cfg.keep_checkpoints,
            )

    def _evaluate(self, iteration: int, log: MetricsLog | None, progress: Progress, final: bool) -> None:
        """Every rank scores its share of the targets (no rank waits alone in the next allreduce);
        rank 0 writes the report."""
        if not self.targets:
            return
        sync_buffers(self.env, self.model)
        report, table = score(
            self.record, self.model, self.targets, self.device, rank=self.env.rank, world=self.env.world
        )
        if not self.env.main:
            return
        assert log is not None  # rank 0 holds the metrics log (fit)
        report = {"iteration": iteration, **report}
        folder = self.run / "eval"
        folder.mkdir(exist_ok=True)
        write_json(folder / f"iter_{iteration:07d}.json", report)
        (folder / f"iter_{iteration:07d}.md").write_text(table)
        if final:
            write_json(self.run / "eval.json", report)
            (self.run / "eval.md").write_text(table)
        if self.best is not None:
            self.best.update(iteration, report, self.model.state_dict())
        if self.curves is not None:
            picture = prediction_picture(self.model, self.targets, self.device, self.amp_dtype)
            self.curves.evaluation(iteration, report, picture)
        miou = report.get("mean_miou", report.get("miou"))
        log.write({"iter": iteration, "eval_miou": miou})
        progress.note(
            f"eval at iteration {iteration}: mIoU {100 * miou:.2f}"
            if miou is not None
            else f"eval at iteration {iteration}: no labelled pixels"
        )


def _samples(partial: dict | None) -> str:
    """A run record's "partial" entry (runs/usage.py) in words."""
    if partial is None:
        return "every sample complete"
    return f"{partial['used']} complete samples ({partial['pending']} pending)"
