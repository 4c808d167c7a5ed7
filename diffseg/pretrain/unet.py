"""Phase 2: train the U-Net and the text encoder jointly on pre-encoded latents.

The objective is SD 2.1's: v-prediction MSE at uniformly drawn timesteps of SD 2.1's
schedule, with diffusers' DDPMScheduler doing the maths (`add_noise`, `get_velocity`).
The text encoder learns with the U-Net, so a class name's embedding comes to mean what
the images show; captions are drawn afresh at every step (captions.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffseg.pipeline.builtin import SD21_SCHEDULER, _text_config
from diffseg.pretrain import checkpoint as ck
from diffseg.pretrain.captions import caption
from diffseg.pretrain.config import PretrainConfig
from diffseg.pretrain.data import ImageSet

PHASE = 2


def build_unet_and_text(cfg: PretrainConfig, tokenizer):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    hidden, layers, heads = cfg.text
    assert hidden == cfg.unet["cross_attention_dim"], (hidden, cfg.unet["cross_attention_dim"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        unet = UNet2DConditionModel(**cfg.unet)
        torch.manual_seed(cfg.seed)
        text_encoder = CLIPTextModel(_text_config(tokenizer, hidden, layers, heads))
        if cfg.token_init_std is not None:  # (None: CLIP's own init, the shipped weights')
            tokens = text_encoder.get_input_embeddings()
            assert isinstance(tokens, torch.nn.Embedding), type(tokens)
            torch.manual_seed(cfg.seed)
            torch.nn.init.normal_(tokens.weight, 0.0, cfg.token_init_std)
    return unet, text_encoder


def noise_scheduler():
    """SD 2.1's training schedule (1000 steps, scaled linear betas, v-prediction)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**{k: v for k, v in SD21_SCHEDULER.items() if k != "set_alpha_to_one"})


class Tokens:
    """Token ids [B, 77] of captions, each caption tokenized once."""

    def __init__(self, tokenizer):
        self.tokenizer, self._ids = tokenizer, {}

    def __call__(self, captions: list[str]) -> torch.Tensor:
        for c in captions:
            if c not in self._ids:
                self._ids[c] = self.tokenizer(
                    c, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True
                ).input_ids
        return torch.tensor([self._ids[c] for c in captions])


def v_loss(unet, text_encoder, scheduler, x0_B4hw, ids_BT, generator) -> torch.Tensor:
    """v-prediction MSE of one batch (noise and timesteps drawn from `generator`)."""
    B = x0_B4hw.shape[0]
    t_B = torch.randint(0, scheduler.config.num_train_timesteps, (B,), generator=generator)
    noise = torch.randn(x0_B4hw.shape, generator=generator)
    x_t = scheduler.add_noise(x0_B4hw, noise, t_B)
    target = scheduler.get_velocity(x0_B4hw, noise, t_B)
    emb_BTD = text_encoder(ids_BT)[0]
    return torch.nn.functional.mse_loss(unet(x_t, t_B, emb_BTD).sample, target)


def batch_captions(rng: np.random.Generator, data: ImageSet, idx, cfg: PretrainConfig) -> list[str]:
    """One fresh caption per image index of a batch, in `cfg`'s caption recipe."""
    return [caption(rng, data.classes(i), data.style(i), data.colors[i], cfg.color_words, cfg.all_classes) for i in idx]


def train_unet(cfg: PretrainConfig, data: ImageSet, latents_N4hw: torch.Tensor, tokenizer, out: Path, log):
    """Train (or resume) phase 2 on scaled latents; returns (unet, text_encoder)."""
    from diffusers.optimization import get_cosine_schedule_with_warmup

    unet, text_encoder = build_unet_and_text(cfg, tokenizer)
    unet.train(), text_encoder.train()
    groups: list[dict[str, Any]] = [dict(params=list(unet.parameters()), lr=cfg.unet_lr)]
    if cfg.text_lr > 0:
        groups.append(dict(params=list(text_encoder.parameters()), lr=cfg.text_lr))
    else:  # frozen at its initialisation, as SD 2.1's text encoder is frozen (at its pre-trained weights)
        text_encoder.requires_grad_(False)
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    sched = get_cosine_schedule_with_warmup(opt, cfg.warmup, cfg.unet_steps)
    phase = ck.PhaseState(out / "unet.ckpt", {"unet": unet, "text": text_encoder}, opt, sched, "unet")
    start = phase.resume(log)
    scheduler, tokens = noise_scheduler(), Tokens(tokenizer)
    params = [p for g in groups for p in g["params"]]
    t0, avg = time.perf_counter(), None
    for step in range(start, cfg.unet_steps):
        rng = np.random.default_rng((cfg.seed, PHASE, step))
        idx = rng.integers(len(latents_N4hw), size=cfg.unet_batch)
        ids = tokens(batch_captions(rng, data, idx, cfg))
        loss = v_loss(unet, text_encoder, scheduler, latents_N4hw[idx], ids, ck.step_generator(cfg.seed, PHASE, step))
        ck.optimizer_step(loss, opt, sched, params)
        done = step + 1
        value = loss.item()
        avg = value if avg is None else 0.95 * avg + 0.05 * value
        if done % 10 == 0 or done == cfg.unet_steps:
            rate = (time.perf_counter() - t0) / (done - start)
            log(f"unet step {done}/{cfg.unet_steps} loss {value:.4f} avg {avg:.4f} {rate:.2f} s/step")
        if done % cfg.checkpoint_every == 0 or done == cfg.unet_steps:
            phase.save(done)
    unet.eval().requires_grad_(False), text_encoder.eval().requires_grad_(False)
    return unet, text_encoder
