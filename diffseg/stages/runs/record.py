"""Open a finished run directory for inference: its recorded config, the trained Segmentor,
and the extraction config of the cache it was trained on (what an online trajectory must repeat).

The run records (files.py) its TrainConfig and layer specs (config.json) and the training
cache's fingerprint (caches.json: model name and fingerprint, a hash of the cache record's
extract config, and that config in full: trajectory, prompts), so a run is self-contained. Runs written
before caches.json held "extract" read it from the recorded training cache instead, checked
against the recorded hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from diffseg.cache import CacheReader
from diffseg.core import location
from diffseg.core.classes import CITYSCAPES, ClassTable
from diffseg.core.errors import CacheMismatch, DiffsegError
from diffseg.nn import Segmentor
from diffseg.stages.device import autocast_dtype
from diffseg.stages.runs.files import CACHES, CONFIG, digest, read_json
from diffseg.stages.runs.model import build_segmentor, held_layers
from diffseg.stages.runs.scoring import Scored, Target, score_each, score_targets, summarize, target_names
from diffseg.stages.runs.usage import samples_used
from diffseg.stages.train import checkpoint
from diffseg.stages.train.config import TrainConfig
from diffseg.stages.train.selection import match_eval_cache


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    path: Path
    cfg: TrainConfig
    layer_specs: dict  # {layer: {"kind", "stride", "channels", "size"}} of the selected layers
    train_cache: (
        dict  # caches.json "train": model, model_fingerprint, extract_hash, ... (classes: a custom label space)
    )

    @property
    def class_table(self) -> ClassTable:
        """The label space the run was trained in: its training cache's, recorded in caches.json when it is
        not Cityscapes' 19 (runs without it are Cityscapes')."""
        if "classes" not in self.train_cache:
            return CITYSCAPES
        return ClassTable.from_json(self.train_cache["classes"], f"{self.path / CACHES} (train.classes)")


def read_run(run: Path) -> RunRecord:
    run = Path(run)
    if not (run / CONFIG).is_file():
        per_seed = sorted(p.parent.name for p in run.glob(f"seed-*/{CONFIG}"))  # `train --seeds` (runs/seeds.py)
        if per_seed:
            raise DiffsegError(
                f"{run} holds one run per seed ({', '.join(per_seed)}): pass one, e.g. {run / per_seed[0]}"
            )
        raise DiffsegError(f"{run} is not a run directory (no {CONFIG}; made by `diffseg train`)")
    record = read_json(run / CONFIG)
    return RunRecord(
        path=run,
        cfg=TrainConfig.from_dict(record["config"]),
        layer_specs=record["layer_specs"],
        train_cache=read_json(run / CACHES)["train"],
    )


def load_segmentor(record: RunRecord, device: torch.device | str) -> tuple[Segmentor, str]:
    """(the run's Segmentor with its final weights, or its newest checkpoint's, in eval mode; which)."""
    cfg = record.cfg
    model = build_segmentor(
        record.layer_specs, len(cfg.save_steps), cfg.fusion, cfg.seed, record.class_table.num_classes
    )
    path, which = checkpoint.latest_weights(record.path)
    model.load_state_dict(checkpoint.load_weights(path))
    return model.to(device).eval(), which


def train_extract(record: RunRecord) -> dict:
    """The extract config of the training cache: as recorded in the run (caches.json), else (runs
    written before it was recorded there) read from the training cache; either way checked
    against the run's recorded hash."""
    cache = record.cfg.cache
    recorded = record.train_cache.get("extract_hash")
    if "extract" in record.train_cache:
        extract, source = record.train_cache["extract"], f"{record.path / CACHES} (train.extract)"
    else:
        try:
            extract = CacheReader(cache).record.extract.to_dict()
        except DiffsegError as err:
            raise DiffsegError(
                f"{record.path} was trained on {cache}, whose extraction config (trajectory, "
                f"prompt) it does not record (a run written before runs recorded it) and "
                f"which cannot be read: {err}"
            ) from err
        source = str(cache)
    if recorded is not None and digest(extract) != recorded:
        raise DiffsegError(
            f"{source} changed since {record.path} was trained: extract config hash "
            f"{digest(extract)}, the run recorded {recorded}"
        )
    return extract


def extract_config(record: RunRecord) -> dict:
    """train_extract(record), which must hold the trajectory an online prediction repeats."""
    cache = record.cfg.cache
    extract = train_extract(record)
    if "trajectory" not in extract:
        raise DiffsegError(
            f"{cache} records no trajectory config (extract.trajectory): "
            "it was not written by `diffseg extract`, so its features cannot be recomputed"
        )
    return extract


def run_targets(record: RunRecord, caches: Sequence[str | Path], allow_partial: bool = False) -> list[Target]:
    """Open every evaluation cache and check it against the run (model fingerprint, trajectory and
    prompt, layers, saved steps; CacheMismatch names both values) and for pending samples (refused
    unless `allow_partial`: usage.py): the one way train, eval, ablate and the demo get the targets
    a run is scored on."""
    cfg = record.cfg
    extract = train_extract(record)
    names = target_names([str(p) for p in caches])
    targets = []
    for path, name in zip(caches, names):
        reader = CacheReader(path)
        idx = match_eval_cache(
            str(path),
            reader.record,
            held_layers(reader).get("uncond", []),
            fingerprint=record.train_cache["model_fingerprint"],
            train_cache=cfg.cache,
            train_extract=extract,
            layers=cfg.layers,
            layer_specs=record.layer_specs,
            save_steps=cfg.save_steps,
        )
        check_label_space(str(path), reader.record.dataset.class_table, record.class_table)
        dataset = reader.record.dataset.name
        usage = samples_used(reader, allow_partial)
        targets.append(
            Target(path=str(path), name=name, dataset=dataset, layers=cfg.layers, step_indices=idx, usage=usage)
        )
    return targets


def check_label_space(cache: str, have: ClassTable, run: ClassTable) -> None:
    """A cache scored by (or trained on with) a run must share its class table: the head's channels are its ids."""
    if have != run:
        raise CacheMismatch(
            f"{cache} is labelled in another label space than the run: {have.num_classes} classes "
            f"({', '.join(have.names[:5])}{', ...' if have.num_classes > 5 else ''}), the run's "
            f"{run.num_classes} ({', '.join(run.names[:5])}{', ...' if run.num_classes > 5 else ''})"
        )


def is_synthia(record: RunRecord) -> bool:
    """Synthia-trained runs report mIoU16/13."""
    return record.train_cache.get("dataset") == "synthia"


def score(
    record: RunRecord, model: Segmentor, targets: list[Target], device: torch.device, *, rank: int = 0, world: int = 1
) -> tuple[dict, str]:
    """Score `model` (the run's weights, in memory) on the run's targets: scoring.score_targets's
    (JSON report, Markdown table), with mIoU16/13 for a Synthia-trained run; under DDP every rank
    calls it and scores its share (rank, world)."""
    amp = autocast_dtype(device)
    names = record.class_table.names
    return score_targets(
        model,
        targets,
        device,
        synthia=is_synthia(record),
        class_names=names,
        autocast_dtype=amp,
        rank=rank,
        world=world,
    )


def score_run_each(
    record: RunRecord, caches: Sequence[str | Path], device: torch.device | str, allow_partial: bool = False
) -> tuple[list[Scored], str]:
    """(scoring.score_each of the run's saved weights, final else the newest checkpoint, on evaluation caches
    checked against the run; which weights). A target with pending samples: refused unless `allow_partial`,
    then its row records the samples scored ("partial")."""
    dev = torch.device(device)
    targets = run_targets(record, caches, allow_partial)  # checked before the weights are loaded
    model, which = load_segmentor(record, dev)
    return score_each(model, targets, dev, autocast_dtype=autocast_dtype(dev)), which


def score_run(
    record: RunRecord, caches: Sequence[str | Path], device: torch.device | str, allow_partial: bool = False
) -> tuple[dict, str, str]:
    """score_run_each summarized: (JSON report: one target its dict, several {"targets": [...], "mean_miou"};
    Markdown table; which weights)."""
    scored, which = score_run_each(record, caches, device, allow_partial)
    report, table = summarize(scored, synthia=is_synthia(record), class_names=record.class_table.names)
    return report, table, which


def per_target_miou(report: dict) -> dict[str, float | None]:
    """{resolved cache path: mIoU} from a scoring report (one target or {"targets": [...]})."""
    rows = report.get("targets", [report])
    return {location.normalize(r["cache"]): r["miou"] for r in rows}
