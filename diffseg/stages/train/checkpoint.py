"""Checkpoints of a run: model weights in safetensors, resume state for `torch.load(weights_only=True)`.

    <run>/checkpoints/iter_0002000.safetensors   model state_dict (parameters + BN buffers)
    <run>/checkpoints/iter_0002000.state.pt      {"iteration", "optimizer", "schedule", "rng", ...}
    <run>/weights.safetensors                    final weights

The resume state holds only tensors, dicts, lists, numbers and strings, so it loads
without unpickling code. Files are written under a temporary name and renamed, the
state after the weights: a state file present means its weights are complete.
Only the newest checkpoint is kept (the reference widths weigh ~1.2 GB each).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from diffseg.core.atomic import atomic_target
from diffseg.core.errors import DiffsegError

CKPT_DIR = "checkpoints"
FINAL = "weights.safetensors"
_NAME = re.compile(r"^iter_(\d{7})\.state\.pt$")


def _paths(run_dir: Path, iteration: int) -> tuple[Path, Path]:
    stem = Path(run_dir) / CKPT_DIR / f"iter_{iteration:07d}"
    return stem.with_suffix(".safetensors"), Path(f"{stem}.state.pt")


def save_weights(state_dict: dict, path: Path) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    with atomic_target(path) as tmp:
        save_file(tensors, str(tmp))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise DiffsegError(f"{path}: weights not found")
    return load_file(str(path))


def save_checkpoint(run_dir: Path, iteration: int, state_dict: dict, resume_state: dict) -> Path:
    """Write weights + resume state for `iteration`; drop older checkpoints. Returns the state path."""
    weights, state = _paths(run_dir, iteration)
    weights.parent.mkdir(parents=True, exist_ok=True)
    save_weights(state_dict, weights)
    with atomic_target(state) as tmp:
        torch.save(resume_state, tmp)
    for it, _ in list_checkpoints(run_dir):
        if it != iteration:
            for p in _paths(run_dir, it):
                p.unlink(missing_ok=True)
    return state


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """[(iteration, state path)] of complete checkpoints, oldest first."""
    folder = Path(run_dir) / CKPT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), folder / m.group(0)) for m in map(_NAME.match, os.listdir(folder)) if m]
    return sorted(found)


def load_checkpoint(run_dir: Path, iteration: int) -> tuple[dict[str, torch.Tensor], dict]:
    """(weights, resume state) of one checkpoint; the state loads with weights_only=True."""
    weights, state = _paths(run_dir, iteration)
    return load_weights(weights), torch.load(state, map_location="cpu", weights_only=True)


def latest_weights(run_dir: Path) -> tuple[Path, str]:
    """The final weights, else the newest checkpoint's: (path, description)."""
    final = Path(run_dir) / FINAL
    if final.is_file():
        return final, "final"
    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        raise DiffsegError(f"{run_dir}: no weights (neither {FINAL} nor a checkpoint under {CKPT_DIR}/)")
    it, _ = ckpts[-1]
    return _paths(run_dir, it)[0], f"checkpoint at iteration {it}"
