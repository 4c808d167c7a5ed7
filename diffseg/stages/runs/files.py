"""The run directory: where it is, and the records that make it self-describing (DESIGN.md "Runs").

    <run>/config.json        resolved TrainConfig + world size + diffseg version
    <run>/caches.json        fingerprint of every cache used: path, model fingerprint,
                             extract config hash, ids hash, dataset
    <run>/metrics.jsonl      one JSON line every few iterations
    <run>/checkpoints/       see checkpoint.py;  <run>/weights.safetensors  final weights
    <run>/eval/              iter_NNNNNNN.{json,md} during training;  <run>/eval.{json,md}

Default location: runs/<cache folder name>-<YYYYmmdd-HHMMSS>, with -2, -3, ... appended when
that name is taken (several runs started in one second, e.g. a job array); `--resume` without
`--out` takes the most recent run of that cache under runs/. A fresh run's folder is claimed
with an exclusive mkdir (`claim`), so two processes never share one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from diffseg.core import location
from diffseg.core.atomic import atomic_write
from diffseg.core.errors import DiffsegError

RUNS = Path("runs")
CONFIG, CACHES, METRICS = "config.json", "caches.json", "metrics.jsonl"
STAMP_LEN = len("YYYYmmdd-HHMMSS")
MAX_SUFFIX = 1000  # default names tried per second: -2 .. -1000


def default_run_dir(cache: str | Path, now: float | None = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return RUNS / f"{location.name(cache)}-{stamp}"


def claim(folder: Path, marker: str) -> bool:
    """Make an empty or new `folder` this process's: create it (and its parents), then create
    `folder/marker` with an exclusive mkdir. False when the folder holds anything already (another
    run, a file) or is a file; of processes racing for one folder, exactly one gets True."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file of that name
        return False
    if any(folder.iterdir()):
        return False
    try:
        (folder / marker).mkdir()
    except FileExistsError:  # another process claimed it between the look and the mkdir
        return False
    return True


def release(folder: Path, marker: str) -> None:
    """Undo `claim` for a run that failed before writing anything: remove the marker and the
    folder while they are empty (only empty folders are ever removed)."""
    for d in (folder / marker, folder):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()


def claim_new(out: Path | None, default: Path, marker: str) -> Path:
    """A new folder claimed for this process: `out` (DiffsegError when it exists and is not empty),
    else `default` or, when taken, `default`-2, -3, ..."""
    if out is not None:
        if not claim(Path(out), marker):
            raise DiffsegError(f"{out} already exists; pass --resume to continue it or choose another --out")
        return Path(out)
    for k in range(1, MAX_SUFFIX + 1):
        folder = default if k == 1 else default.with_name(f"{default.name}-{k}")
        if claim(folder, marker):
            return folder
    raise DiffsegError(f"{default} and its -2 .. -{MAX_SUFFIX} variants are all taken: choose an --out")


def _run_order(run: Path, prefix: str) -> tuple[str, int, float]:
    """Sort key of default-named runs: the time stamp, then the -k suffix (numerically), then mtime."""
    rest = run.name[len(prefix) :]
    stamp, suffix = rest[:STAMP_LEN], rest[STAMP_LEN + 1 :]
    return stamp, int(suffix) if suffix.isdigit() else 1, (run / CONFIG).stat().st_mtime


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
    return max(found, key=lambda d: _run_order(d, f"{name}-"))


def resolve_run_dir(cache: str | Path, out: Path | None, resume: bool, marker: str) -> Path:
    """Where the run lives; checks the --out/--resume rules. A fresh run's folder is claimed here
    (`claim_new`, `marker` its claim); `release` it when the run fails before writing its records."""
    if resume:
        run = Path(out) if out is not None else latest_run(cache)
        if not (run / CONFIG).is_file():
            raise DiffsegError(f"--resume: {run} is not a run directory (no {CONFIG})")
        return run
    return claim_new(out, default_run_dir(cache), marker)


def write_json(path: Path, obj) -> None:
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


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


def trim_metrics(path: Path, iteration: int) -> None:
    """Drop the lines of metrics.jsonl logged after `iteration` (a resumed run logs them again from
    its checkpoint), and a line cut off by a kill; the file is replaced atomically."""
    if not Path(path).is_file():
        return
    kept = []
    for line in Path(path).read_text().splitlines(keepends=True):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # only the last line can be torn, and it was written after the checkpoint
        if record.get("iter", 0) <= iteration:
            kept.append(line if line.endswith("\n") else line + "\n")
    atomic_write(path, "".join(kept))


def cache_change(recorded: dict, now: dict) -> str | None:
    """In words, what differs between a run's recorded training cache and the cache at that path now
    (`cache_fingerprint` dicts, "extract" included when recorded): None when nothing does."""
    if recorded["model_fingerprint"] != now["model_fingerprint"]:
        return (
            f"its model fingerprint was {recorded['model_fingerprint']} ({recorded['model']}), "
            f"now {now['model_fingerprint']} ({now['model']})"
        )
    if recorded["extract_hash"] != now["extract_hash"]:
        if "extract" in recorded and "extract" in now:
            key, was, got = first_difference(recorded["extract"], now["extract"])
            return f"its extract config's {key} was {json.dumps(was)}, now {json.dumps(got)}"
        return f"its extract config changed (hash {recorded['extract_hash']}, now {now['extract_hash']})"
    if recorded["ids_hash"] != now["ids_hash"]:
        return f"its sample ids changed ({recorded['samples']} samples then, {now['samples']} now)"
    return None


def first_difference(a, b, key: str = "") -> tuple[str, object, object]:
    """(dotted key, value in a, value in b) of the first place two JSON values differ (they do)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in [*a, *(k for k in b if k not in a)]:
            if a.get(k) != b.get(k):
                return first_difference(a.get(k), b.get(k), f"{key}.{k}" if key else str(k))
    return key or "(whole value)", a, b


class MetricsLog:
    """Appends one JSON object per line to metrics.jsonl (flushed, so a killed run keeps its lines)."""

    def __init__(self, path: Path):
        self.file = open(path, "a", buffering=1)  # noqa: SIM115 (held open for the run; closed by close())

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self.file.close()
