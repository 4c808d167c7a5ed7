"""Phase 3: fine-tune the autoencoder's decoder with the encoder frozen.

As Stable Diffusion's released decoders were (ft-EMA, ft-MSE): the latent space, and so
the U-Net trained on it and every feature diffseg extracts, stays exactly as it is; only
the pictures decoded from latents (reconstructions, samples) get sharper and truer in
colour. Decoding starts from the posterior mean, the latent the extractor encodes.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from diffseg.pretrain import checkpoint as ck
from diffseg.pretrain.config import PretrainConfig
from diffseg.pretrain.data import ImageSet
from diffseg.pretrain.vae import crops

PHASE = 3


def decoder_parameters(vae) -> list[torch.nn.Parameter]:
    return [*vae.post_quant_conv.parameters(), *vae.decoder.parameters()]


def train_decoder(cfg: PretrainConfig, data: ImageSet, vae, out: Path, log):
    """Train (or resume) phase 3 on `vae` in place; returns it frozen again."""
    from diffusers.optimization import get_cosine_schedule_with_warmup

    params = decoder_parameters(vae)
    opt = torch.optim.AdamW(params, lr=cfg.decoder_lr, weight_decay=0.0)
    sched = get_cosine_schedule_with_warmup(opt, cfg.warmup, cfg.decoder_steps)
    phase = ck.PhaseState(out / "decoder.ckpt", {"model": vae}, opt, sched, "decoder")
    start = phase.resume(log)
    vae.eval().requires_grad_(False)
    vae.decoder.train()
    for p in params:
        p.requires_grad_(True)
    t0 = time.perf_counter()
    for step in range(start, cfg.decoder_steps):
        x = crops(data, cfg, PHASE, step)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mean
        loss = (vae.decode(z).sample - x).abs().mean()
        ck.optimizer_step(loss, opt, sched, params)
        done = step + 1
        if done % 10 == 0 or done == cfg.decoder_steps:
            rate = (time.perf_counter() - t0) / (done - start)
            log(f"decoder step {done}/{cfg.decoder_steps} l1 {loss.item():.4f} {rate:.2f} s/step")
        if done % cfg.checkpoint_every == 0 or done == cfg.decoder_steps:
            phase.save(done)
    vae.eval().requires_grad_(False)
    return vae
