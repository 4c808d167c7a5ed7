"""Resumable training state: one file per phase, written atomically.

A checkpoint holds plain tensors and numbers (module, optimizer and LR-schedule state
dicts, the step), loaded with `weights_only=True`: nothing arbitrary is unpickled. Every
random draw of a step is seeded by (seed, phase, step), so a resumed run takes exactly the
steps an uninterrupted one would.
"""

from __future__ import annotations

from pathlib import Path

import torch

from diffseg.core.atomic import atomic_target
from diffseg.core.seeds import hash_seed


def save(path: Path, state: dict) -> None:
    with atomic_target(path) as tmp:  # a kill mid-write leaves the previous checkpoint intact
        torch.save(state, tmp)


def load(path: Path) -> dict | None:
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None


def step_generator(seed: int, phase: int, step: int) -> torch.Generator:
    """The torch generator of one training step (noise, timesteps, posterior samples)."""
    return torch.Generator().manual_seed(hash_seed(seed, phase, step))


class PhaseState:
    """One phase's resumable state: its modules (by checkpoint key), optimizer and LR schedule."""

    def __init__(self, path: Path, modules: dict[str, torch.nn.Module], opt, sched, name: str):
        self.path, self.modules, self.opt, self.sched, self.name = path, modules, opt, sched, name

    def resume(self, log) -> int:
        """Load the checkpoint if there is one; -> the step to start from."""
        if (state := load(self.path)) is None:
            return 0
        for key, module in self.modules.items():
            module.load_state_dict(state[key])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        log(f"{self.name}: resumed at step {state['step']}")
        return state["step"]

    def save(self, step: int) -> None:
        state = {k: m.state_dict() for k, m in self.modules.items()}
        save(self.path, {**state, "opt": self.opt.state_dict(), "sched": self.sched.state_dict(), "step": step})


def optimizer_step(loss: torch.Tensor, opt, sched, params) -> None:
    """Backward, clip the gradient norm at 1, step the optimizer and the LR schedule (every phase)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
