"""The `mini` model's architecture and its pre-training recipe (one frozen config).

`mini` keeps `tiny`'s component classes and SD 2.1's block structure (diffseg.pipeline.
builtin): 4 down / 4 up blocks, up_blocks[0] without attention, linear projections,
upcast attention, an 8x VAE, a CLIP text encoder on the built-in tokenizer. Widths are
chosen to learn within about an hour on a 2-core CPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from diffseg.pipeline.builtin import SD21_UNET, SMALL_VAE

MINI_UNET = {
    **SD21_UNET,
    "sample_size": 16,
    "block_out_channels": (32, 64, 96, 96),
    "attention_head_dim": (2, 4, 6, 6),  # heads (diffusers' historical name): 16 channels per head
    "cross_attention_dim": 64,
}
# 16 channels at full resolution keep the 128 px decoder affordable; 64 at 1/8.
MINI_VAE = {**SMALL_VAE, "block_out_channels": (16, 32, 64, 64)}
MINI_TEXT = (64, 2, 4)  # CLIP text encoder (hidden = U-Net cross_attention_dim, layers, heads)


@dataclass(frozen=True, kw_only=True)
class PretrainConfig:
    seed: int = 0  # images (their own stream, diffseg.data.demo.pretrain), init, batches, noise
    images: int = 4000  # pre-training images, styles in turn
    size: int = 128  # image side in px (the demo's default resolution; 16 x 16 latents)
    # > 1: half the images are close-ups, up to `zoom` x (the source's `zoom`), so that captions vary
    # more; tried at 4 with unet_steps 2000, decoder_steps 600 (README: no gain on `dev`, not shipped)
    zoom: float = 1.0
    # > 0: each kind of thing a scene can leave out (facades, vehicles, people, poles) is left out with
    # this probability, so that the classes a caption names vary (tried at 0.5: README, not shipped)
    variety: float = 0.0
    # > 0: a caption's class names come after their colour word ("red car") with this probability
    # (captions.py), something only the caption says (tried at 0.8 with token_init_std 1.0: the
    # caption then matters, but is read as one global vector; xattn stays flat: README, not shipped)
    color_words: float = 0.0
    # > 0: a class-list caption names every class with this probability, the absent ones with a
    # random colour word (with color_words; captions.py), so that its colours exceed what the mean of
    # its values carries cleanly (tried at 1.0 by experiments/probe_xattn_finetune.py: xattn stays at its
    # chance level: docs/notes/xattn.md, not shipped)
    all_classes: float = 0.0
    threads: int = 2  # torch threads: results are reproducible for one torch build and thread count
    # 1. autoencoder (L1 reconstruction + SD's small KL weight) on random crops
    vae_steps: int = 2000
    vae_batch: int = 16
    vae_crop: int = 64  # the VAE is convolutional: crops train it at a quarter of the cost
    vae_lr: float = 1e-3
    kl_weight: float = 1e-6  # per latent element, against the per-pixel reconstruction loss
    vae_logvar_init: float = -6.0  # start the posterior narrow (std 0.05): the decoder sees signal from step 1
    # 3. (after 2) the decoder alone, encoder frozen: sharper pictures, the same latents
    decoder_steps: int = 1000
    decoder_lr: float = 1e-3
    # 2. U-Net + text encoder, jointly, v-prediction on pre-encoded latents
    unet_steps: int = 1600
    unet_batch: int = 32
    unet_lr: float = 1e-3
    text_lr: float = 5e-4  # 0: the text encoder stays frozen at its initialisation
    # None: CLIP's init (token embeddings std 0.02), under which every class word comes out of the
    # 2-layer encoder as nearly the same vector (cos 0.95 between words at one position; 0.997
    # after joint training), so no cross-attention map can tell classes apart. 1.0: token identity
    # dominates (cos 0.06 between words; one word across contexts 0.93)
    token_init_std: float | None = None
    warmup: int = 100  # linear warmup, then cosine decay to 0 (both phases)
    checkpoint_every: int = 50  # steps between resumable checkpoints
    unet: dict = dataclasses.field(default_factory=lambda: dict(MINI_UNET))
    vae: dict = dataclasses.field(default_factory=lambda: dict(MINI_VAE))
    text: tuple[int, int, int] = MINI_TEXT

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def quick_config(**overrides) -> PretrainConfig:
    """A few steps on a few images: the end-to-end test's recipe."""
    base = dict(
        images=10, vae_steps=3, vae_batch=2, decoder_steps=3, unet_steps=3, unet_batch=2, warmup=1, checkpoint_every=2
    )
    return PretrainConfig(**{**base, **overrides})
