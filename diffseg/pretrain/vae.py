"""Phase 1: train the autoencoder (AutoencoderKL) on random crops of the pre-training images.

Loss: per-pixel L1 reconstruction of a posterior sample, plus SD's small KL weight per
latent element. Afterwards the latent scaling factor is set as SD's was: 1 / the standard
deviation of the encoded training latents, so the U-Net sees unit-variance latents.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from diffseg.pretrain import checkpoint as ck
from diffseg.pretrain.config import PretrainConfig
from diffseg.pretrain.data import ImageSet

if TYPE_CHECKING:  # from its module: mypy reads `from diffusers import X` as a no-torch dummy
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

PHASE = 1


def build_vae(cfg: PretrainConfig) -> AutoencoderKL:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        vae = AutoencoderKL(**cfg.vae)
    # quant_conv gives the [mean, logvar] channels; without a KL pull to std 1, a
    # unit-variance posterior at init only drowns the signal until the encoder shrinks it
    latent = cfg.vae["latent_channels"]
    with torch.no_grad():
        vae.quant_conv.bias[latent:] = cfg.vae_logvar_init
    return vae


def to_pixels(images_BHW3: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] in [-1, 1] (docs/design/method.md §2)."""
    return torch.from_numpy(images_BHW3).permute(0, 3, 1, 2).float() / 127.5 - 1


def crops(data: ImageSet, cfg: PretrainConfig, phase: int, step: int) -> torch.Tensor:
    """A batch of random flipped crops [vae_batch, 3, vae_crop, vae_crop] for one step."""
    rng = np.random.default_rng((cfg.seed, phase, step))
    idx = rng.integers(len(data.images), size=cfg.vae_batch)
    c, s = cfg.vae_crop, cfg.size
    ys, xs = rng.integers(0, s - c + 1, size=(2, cfg.vae_batch))
    crops = np.stack([data.images[i, y : y + c, x : x + c] for i, y, x in zip(idx, ys, xs)])
    flip = rng.random(cfg.vae_batch) < 0.5
    crops[flip] = crops[flip, :, ::-1]
    return to_pixels(crops)


def vae_loss(vae, x_B3HW: torch.Tensor, kl_weight: float, generator: torch.Generator) -> tuple[torch.Tensor, float]:
    posterior = vae.encode(x_B3HW).latent_dist
    z = posterior.sample(generator=generator)
    rec = (vae.decode(z).sample - x_B3HW).abs().mean()
    kl = posterior.kl().mean() / z[0].numel()  # per latent element
    return rec + kl_weight * kl, rec.item()


def train_vae(cfg: PretrainConfig, data: ImageSet, out: Path, log) -> AutoencoderKL:
    """Train (or resume) phase 1; returns the trained VAE with its scaling factor set."""
    from diffusers.optimization import get_cosine_schedule_with_warmup

    vae = build_vae(cfg).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    sched = get_cosine_schedule_with_warmup(opt, cfg.warmup, cfg.vae_steps)
    phase = ck.PhaseState(out / "vae.ckpt", {"model": vae}, opt, sched, "vae")
    start = phase.resume(log)
    t0 = time.perf_counter()
    for step in range(start, cfg.vae_steps):
        loss, rec = vae_loss(
            vae, crops(data, cfg, PHASE, step), cfg.kl_weight, ck.step_generator(cfg.seed, PHASE, step)
        )
        ck.optimizer_step(loss, opt, sched, vae.parameters())
        done = step + 1
        if done % 10 == 0 or done == cfg.vae_steps:
            rate = (time.perf_counter() - t0) / (done - start)
            log(f"vae step {done}/{cfg.vae_steps} l1 {rec:.4f} loss {loss.item():.4f} {rate:.2f} s/step")
        if done % cfg.checkpoint_every == 0 or done == cfg.vae_steps:
            phase.save(done)
    vae.eval().requires_grad_(False)
    return vae


@torch.no_grad()
def encode_all(vae, images_NHW3: np.ndarray, batch: int = 64) -> torch.Tensor:
    """Posterior means [N, 4, h, w] (unscaled), as the extractor encodes (docs/design/method.md §2)."""
    out = [
        vae.encode(to_pixels(images_NHW3[i : i + batch])).latent_dist.mean for i in range(0, len(images_NHW3), batch)
    ]
    return torch.cat(out)


def set_scaling_factor(vae, latents_N4hw: torch.Tensor) -> float:
    """SD's recipe: scaling_factor = 1 / std of the training latents."""
    factor = float(1.0 / latents_N4hw.float().std())
    vae.register_to_config(scaling_factor=factor)
    return factor
