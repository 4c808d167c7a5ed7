"""Checkpoints of a run: model weights in safetensors, resume state for `torch.load(weights_only=True)`.

    <run>/checkpoints/iter_0002000.safetensors   model state_dict (parameters + BN buffers)
    <run>/checkpoints/iter_0002000.state.pt      {"iteration", "optimizer", "schedule", "rng", ...}
    <run>/checkpoints/iter_0002000.sha256        sha256 of both files (`sha256sum -c` reads it)
    <run>/weights.safetensors                    final weights

The resume state holds only tensors, dicts, lists, numbers and strings, so it loads
without unpickling code. Each file is replaced atomically (core/atomic.py), the weights,
then the state, then the checksums: a checksum file present means both files are complete,
and a checkpoint whose bytes no longer match it (a flipped byte, a truncated copy) is not
used. The newest `keep` checkpoints are kept (retention.py), so a bad newest one falls back
to the one before it (the reference widths weigh ~1.2 GB each: keep stays small).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from diffseg.core.atomic import atomic_target, atomic_write
from diffseg.core.errors import DiffsegError
from diffseg.stages.train.retention import KEEP, to_drop

CKPT_DIR = "checkpoints"
FINAL = "weights.safetensors"
_NAME = re.compile(r"^iter_(\d{7})\.sha256$")
_ANY = re.compile(r"^iter_(\d{7})\.(?:sha256|safetensors|state\.pt)$")  # not *.partial temporaries
_HASH_CHUNK = 1 << 20
T = TypeVar("T")


class BadCheckpoint(DiffsegError):
    """A checkpoint whose files are missing, altered or unreadable (the message names the file)."""


def _stem(run_dir: Path, iteration: int) -> Path:
    return Path(run_dir) / CKPT_DIR / f"iter_{iteration:07d}"


def _paths(run_dir: Path, iteration: int) -> tuple[Path, Path]:
    stem = _stem(run_dir, iteration)
    return stem.with_suffix(".safetensors"), Path(f"{stem}.state.pt")


def _sums_path(run_dir: Path, iteration: int) -> Path:
    return Path(f"{_stem(run_dir, iteration)}.sha256")


def save_weights(state_dict: dict, path: Path) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    try:
        with atomic_target(path, fsync=True) as tmp:
            save_file(tensors, str(tmp))
    except (OSError, SafetensorError) as err:  # a full disk, a quota, a read-only folder
        raise DiffsegError(f"{path}: cannot write the weights ({err})") from err


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise DiffsegError(f"{path}: weights not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise DiffsegError(f"{path}: not readable safetensors weights ({err})") from err


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(run_dir: Path, iteration: int, state_dict: dict, resume_state: dict, *, keep: int = KEEP) -> Path:
    """Write weights + resume state + checksums for `iteration`; keep the newest `keep` checkpoints.
    Returns the state path. A write that fails (a full disk) leaves no temporary file and raises
    a DiffsegError naming the file; the checkpoints before it stay."""
    weights, state = _paths(run_dir, iteration)
    try:
        save_weights(state_dict, weights)
        with atomic_target(state, fsync=True) as tmp:
            torch.save(resume_state, tmp)
        sums = "".join(f"{sha256(p)}  {p.name}\n" for p in (weights, state))
        atomic_write(_sums_path(run_dir, iteration), sums, fsync=True)
    except (OSError, DiffsegError) as err:
        for p in (weights, state):  # what was complete of it: without its checksums it is never used
            p.unlink(missing_ok=True)
        if isinstance(err, DiffsegError):  # save_weights's, naming the weights file
            raise
        raise DiffsegError(f"{state.parent}: cannot write the checkpoint of iteration {iteration} ({err})") from err
    for old in to_drop([it for it, _ in list_checkpoints(run_dir)], keep):
        _sums_path(run_dir, old).unlink(missing_ok=True)  # first: a half-deleted checkpoint is not listed
        for p in _paths(run_dir, old):
            p.unlink(missing_ok=True)
    return state


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """[(iteration, state path)] of complete checkpoints (their checksum file written), oldest first."""
    return [(it, _paths(run_dir, it)[1]) for it in sorted(_iterations(run_dir, _NAME))]


def _iterations(run_dir: Path, pattern: re.Pattern) -> set[int]:
    folder = Path(run_dir) / CKPT_DIR
    if not folder.is_dir():
        return set()
    return {int(m.group(1)) for m in map(pattern.match, os.listdir(folder)) if m}


def verify(run_dir: Path, iteration: int) -> None:
    """BadCheckpoint unless both files of the checkpoint match their recorded sha256."""
    sums = _sums_path(run_dir, iteration)
    if not sums.is_file():
        raise BadCheckpoint(f"{sums}: missing (the checkpoint's write was cut off, or an older diffseg wrote it)")
    recorded = {}
    for line in sums.read_bytes().decode(errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        recorded[name] = digest
    for p in _paths(run_dir, iteration):
        if p.name not in recorded:
            raise BadCheckpoint(f"{sums}: no checksum of {p.name}")
        if not p.is_file():
            raise BadCheckpoint(f"{p}: missing")
        if sha256(p) != recorded[p.name]:
            raise BadCheckpoint(f"{p}: its bytes differ from the checksum in {sums.name} (altered or truncated)")


def load_checkpoint(run_dir: Path, iteration: int) -> tuple[dict[str, torch.Tensor], dict]:
    """(weights, resume state) of one checkpoint, checksums verified; the state loads with
    weights_only=True. BadCheckpoint when a file is missing, altered or unreadable."""
    verify(run_dir, iteration)
    weights, state = _paths(run_dir, iteration)
    try:
        tensors = load_weights(weights)
        resume = torch.load(state, map_location="cpu", weights_only=True)
    except (DiffsegError, RuntimeError, OSError, EOFError) as err:
        raise BadCheckpoint(f"{state.parent}: iteration {iteration} does not load ({err})") from err
    return tensors, resume


def newest_usable(
    run_dir: Path, open_one: Callable[[Path, int], T], warn: Callable[[str], None]
) -> tuple[int, T] | None:
    """(iteration, open_one(run_dir, iteration)) of the newest checkpoint that opens, else None.
    Every checkpoint file present counts, listed or not, so a newer one that is cut off or
    altered is named in a warning (one line each) before falling back to the one before it."""
    seen = _iterations(run_dir, _ANY)
    for it in sorted(seen, reverse=True):
        try:
            return it, open_one(run_dir, it)
        except BadCheckpoint as err:
            earlier = [k for k in seen if k < it]
            warn(f"{err}: " + (f"falling back to iteration {max(earlier)}" if earlier else "no earlier checkpoint"))
    return None


def latest_weights(run_dir: Path) -> tuple[Path, str]:
    """The final weights, else the newest checkpoint's whose checksums hold: (path, description)."""
    final = Path(run_dir) / FINAL
    if final.is_file():
        return final, "final"
    found = newest_usable(run_dir, verify, lambda line: print(f"warning: {line}", file=sys.stderr, flush=True))
    if found is None:
        raise DiffsegError(f"{run_dir}: no usable weights (neither {FINAL} nor a sound checkpoint under {CKPT_DIR}/)")
    it, _ = found
    return _paths(run_dir, it)[0], f"checkpoint at iteration {it}"
