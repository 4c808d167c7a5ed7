"""Pictures that show what a trained model learned: DDIM samples and autoencoder reconstructions.

Sampling is diffusers' DDIMScheduler (`set_timesteps`, `step`) with classifier-free
guidance against the empty prompt; the noise comes from the caller's generator.
Images are uint8 [B, H, W, 3].
"""

from __future__ import annotations

import numpy as np
import torch

from diffseg.pipeline.prompts import TextEmbeddings


def _to_uint8(x_B3HW: torch.Tensor) -> np.ndarray:
    return ((x_B3HW.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def generate(
    models, prompts: list[str], generator: torch.Generator, size: int = 128, steps: int = 30, guidance: float = 3.0
) -> np.ndarray:
    """One DDIM sample per prompt: uint8 [len(prompts), size, size, 3]."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(models.scheduler.config)
    scheduler.set_timesteps(steps)
    text = TextEmbeddings(models.tokenizer, models.text_encoder, models.device, models.dtype)
    B = len(prompts)
    emb_BTD = torch.cat([text.batch([""] * B), text.batch(prompts)])
    x = torch.randn((B, models.unet.config.in_channels, size // 8, size // 8), generator=generator)
    x = x.to(models.device, models.dtype)
    for t in scheduler.timesteps:
        out = models.unet(torch.cat([x, x]), t, emb_BTD).sample
        uncond, cond = out.chunk(2)
        x = scheduler.step(uncond + guidance * (cond - uncond), t, x).prev_sample
    return _to_uint8(models.vae.decode(x / models.vae.config.scaling_factor).sample)


@torch.no_grad()
def reconstruct(models, images_BHW3: np.ndarray) -> np.ndarray:
    """Encode (posterior mean, as the extractor does) and decode: uint8 [B, H, W, 3]."""
    x = torch.from_numpy(images_BHW3).permute(0, 3, 1, 2).to(models.device, models.dtype) / 127.5 - 1
    return _to_uint8(models.vae.decode(models.vae.encode(x).latent_dist.mean).sample)


def style_prompt(style: str, classes: tuple[int, ...]) -> str:
    """The canonical caption of a `style` scene showing `classes` (pre-training's words, no randomness)."""
    from diffseg.core.classes import CLASS_NAMES
    from diffseg.pretrain.captions import STYLE_WORDS

    return f"a photo of a city street, {', '.join(CLASS_NAMES[c] for c in classes)}; {STYLE_WORDS[style][0]}"


def model_pictures(
    spec: str,
    prompts: list[str],
    images_BHW3: np.ndarray,
    seed: int = 0,
    steps: int = 25,
    guidance: float = 3.0,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """(one DDIM sample per prompt at the images' size, the images' autoencoder reconstructions) of the
    model `spec` (a built-in name or a directory, as `--model` takes it), both uint8 [B, H, W, 3]."""
    from diffseg.pipeline.models import load_models

    models = load_models(spec, device)
    generator = torch.Generator().manual_seed(seed)
    samples = generate(models, prompts, generator, size=int(images_BHW3.shape[1]), steps=steps, guidance=guidance)
    return samples, reconstruct(models, images_BHW3)
