"""Timing on a device: CUDA work is asynchronous, so a wall-clock reading must wait for it."""

from __future__ import annotations

import torch


def sync(device: str | torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
