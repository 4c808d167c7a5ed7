"""The run directory: where it is, and the records that make it self-describing (docs/design/architecture.md "Runs").

    <run>/config.json        resolved TrainConfig + world size + diffseg version
    <run>/caches.json        fingerprint of every cache used: path, model fingerprint,
                             extract config hash, ids hash, dataset
    <run>/metrics.jsonl      one JSON line every few iterations
    <run>/checkpoints/       see checkpoint.py;  <run>/weights.safetensors  final weights
    <run>/eval/              iter_NNNNNNN.{json,md} during training;  <run>/eval.{json,md}

Default location: runs/<cache folder name>-<YYYYmmdd-HHMMSS>, with -2, -3, ... appended when
that name is taken (several runs started in one second, e.g. a job array); `--resume` without
`--out` takes the most recent run of that cache under runs/. A folder becomes a run's when its
config.json is created, exclusively (`create_run`), so two processes never share one.
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
STAMP_LEN = len("YYYYmmdd-HHMMSS")
MAX_SUFFIX = 1000  # default names tried per second: -2 .. -1000


def default_run_dir(cache: str | Path, now: float | None = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return RUNS / f"{location.name(cache)}-{stamp}"


def default_names(run: Path) -> list[Path]:
    """A default folder name and the ones tried when it is taken: `run`, `run`-2, ... `run`-MAX_SUFFIX."""
    return [run, *(run.with_name(f"{run.name}-{k}") for k in range(2, MAX_SUFFIX + 1))]


def new_folder(default: Path) -> Path:
    """The first of `default_names(default)` that this call creates (an exclusive mkdir): a default
    folder of several runs (`train --seeds`) that processes started together never share."""
    for folder in default_names(default):
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            continue
        return folder
    raise DiffsegError(f"{default} and its -2 .. -{MAX_SUFFIX} variants are all taken: choose an --out")


def create_run(run: Path, config: dict, *, explicit: bool) -> Path:
    """Create the run folder by creating its config.json exclusively (core/atomic.py): of processes
    racing for one folder, exactly one gets it. An `explicit` --out that is taken (or not empty) is
    a DiffsegError; a default name that is taken moves on to `run`-2, -3, ... Returns the folder."""
    for folder in [run] if explicit else default_names(run):
        if not explicit and folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            continue  # another run's (or a file)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            write_json(folder / CONFIG, config, exclusive=True)
        except FileExistsError:
            continue
        return folder
    if explicit:
        raise DiffsegError(f"{run} already exists; pass --resume to continue it or choose another --out")
    raise DiffsegError(f"{run} and its -2 .. -{MAX_SUFFIX} variants are all taken: choose an --out")


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


def resolve_run_dir(cache: str | Path, out: Path | None, resume: bool) -> Path:
    """Where the run lives; checks the --out/--resume rules. A fresh run's folder is only a
    candidate here: `create_run` makes it (or the next free default name) the run's."""
    if resume:
        run = Path(out) if out is not None else latest_run(cache)
        if not (run / CONFIG).is_file():
            raise DiffsegError(f"--resume: {run} is not a run directory (no {CONFIG})")
        return run
    run = Path(out) if out is not None else default_run_dir(cache)
    if out is not None and run.exists() and (not run.is_dir() or any(run.iterdir())):
        raise DiffsegError(f"{run} already exists; pass --resume to continue it or choose another --out")
    return run


def write_json(path: Path, obj, *, exclusive: bool = False) -> None:
    """`path` := obj as indented JSON, atomically; `exclusive`: FileExistsError if it exists."""
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", exclusive=exclusive)


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
