"""The run directory: where it is, and the records that make it self-describing (docs/design/architecture.md "Runs").

    <run>/config.json        resolved TrainConfig + world size + diffseg version
    <run>/caches.json        fingerprint of every cache used: path, model fingerprint,
                             extract config hash, ids hash, dataset
    <run>/metrics.jsonl      one JSON line every few iterations
    <run>/checkpoints/       see checkpoint.py;  <run>/weights.safetensors  final weights
    <run>/eval/              iter_NNNNNNN.{json,md} during training;  <run>/eval.{json,md}

Default location: runs/<cache folder name>-<YYYYmmdd-HHMMSS>; `--resume` without
`--out` takes the most recent run of that cache under runs/.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from diffseg.core import location
from diffseg.core.atomic import atomic_write
from diffseg.core.errors import DiffsegError

RUNS = Path("runs")
CONFIG, CACHES, METRICS = "config.json", "caches.json", "metrics.jsonl"


def default_run_dir(cache: str | Path, now: float | None = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return RUNS / f"{location.name(cache)}-{stamp}"


def latest_run(cache: str | Path) -> Path:
    """The most recent run under runs/ trained on this cache (by config.json), else an error."""
    name = location.name(cache)
    found = []
    if RUNS.is_dir():
        for d in RUNS.glob(f"{name}-*"):
            cfg = d / CONFIG
            if cfg.is_file() and location.same(json.loads(cfg.read_text())["config"]["cache"], cache):
                found.append(d)
    if not found:
        raise DiffsegError(
            f"--resume: no run of {cache} under {RUNS}/ (looked for {RUNS}/{name}-*/{CONFIG}); give --out RUN_DIR"
        )
    return max(found, key=lambda d: (d.name, (d / CONFIG).stat().st_mtime))


def resolve_run_dir(cache: str | Path, out: Path | None, resume: bool) -> Path:
    """Where the run lives; checks the --out/--resume rules."""
    if resume:
        run = Path(out) if out is not None else latest_run(cache)
        if not (run / CONFIG).is_file():
            raise DiffsegError(f"--resume: {run} is not a run directory (no {CONFIG})")
        return run
    run = Path(out) if out is not None else default_run_dir(cache)
    if run.exists() and (not run.is_dir() or any(run.iterdir())):
        raise DiffsegError(f"{run} already exists; pass --resume to continue it or choose another --out")
    return run


def write_json(path: Path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: Path):
    if not Path(path).is_file():
        raise DiffsegError(f"{path}: not found")
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise DiffsegError(f"{path}: not valid JSON ({err})") from err


def digest(obj) -> str:
    """sha256 of canonical JSON, first 16 hex digits."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def cache_fingerprint(path: str | Path, record, ids: list[str]) -> dict:
    """What identifies a cache's content (its CacheRecord and ids) for this run's record."""
    return {
        "path": location.normalize(path),
        "model": record.model.name,
        "model_fingerprint": record.model.fingerprint,
        "extract_hash": digest(record.extract.to_dict()),
        "ids_hash": digest(list(ids)),
        "samples": len(ids),
        "dataset": record.dataset.name,
        "split": record.dataset.split,
        "kind": record.kind,
    }


class MetricsLog:
    """Appends one JSON object per line to metrics.jsonl (flushed, so a killed run keeps its lines)."""

    def __init__(self, path: Path):
        self.file = open(path, "a", buffering=1)  # noqa: SIM115 (held open for the run; closed by close())

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self.file.close()
