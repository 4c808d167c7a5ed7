"""Pixels -> latents (docs/design/method.md §2): uint8 [0, 255] -> [-1, 1] -> VAE posterior mean (default)
or a seeded posterior sample, times vae.config.scaling_factor."""

from __future__ import annotations

import numpy as np
import torch

from diffseg.core.errors import DiffsegError
from diffseg.core.geometry import check_unet_size


def to_pixels(images_BHW3, device, dtype) -> torch.Tensor:
    """uint8 [B, H, W, 3] (numpy or tensor) -> [B, 3, H, W] in [-1, 1]."""
    x = torch.as_tensor(np.ascontiguousarray(images_BHW3) if isinstance(images_BHW3, np.ndarray) else images_BHW3)
    if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[-1] != 3:
        raise DiffsegError(f"expected uint8 images [B, H, W, 3], got {tuple(x.shape)} {x.dtype}")
    check_unet_size((x.shape[2], x.shape[1]))
    x = x.to(device).permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1.0
    return x.to(dtype)


def encode(vae, images_BHW3, mode: str = "mean", generators=None) -> torch.Tensor:
    """[B, 4, H/8, W/8] float32 latents. mode 'sample' needs one torch.Generator per image."""
    px = to_pixels(images_BHW3, vae.device, vae.dtype)
    dist = vae.encode(px).latent_dist
    if mode == "mean":
        z = dist.mean
    elif mode == "sample":
        assert generators is not None and len(generators) == px.shape[0]
        noise = torch.stack(
            [torch.randn(dist.mean.shape[1:], generator=g, dtype=torch.float32) for g in generators]
        ).to(dist.mean.device)
        z = dist.mean.float() + dist.std.float() * noise
    else:
        raise DiffsegError(f"unknown encode mode {mode!r} (expected mean or sample)")
    return z.float() * float(vae.config.scaling_factor)
