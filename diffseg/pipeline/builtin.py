"""The built-in models: `tiny` (tests), `sd21-random` (cost benchmarks), `mini` (trained). docs/design/method.md §1.

Both use the real component classes with seeded random weights (`torch.manual_seed`
before each component, like diffusers' `get_dummy_components`), so building one twice
gives the same weights and the same fingerprint. `tiny` keeps SD 2.1's U-Net block
structure (4 down / 4 up blocks, up_blocks[0] without attention, 3 resnets and 3
transformers per cross-attention up block, linear projections, upcast attention) with
widths 32/64/64/64, so layer names and strides mean the same on both. `sd21-random` has
the true SD 2.1 U-Net shapes; its VAE and text encoder are small but produce SD 2.1's
output shapes (4-channel latents at 1/8, 77 x 1024 token embeddings).

`mini` is different: trained weights, shipped inside the package as a diffusers directory
(SHIPPED) and loaded through the same directory code path as a real SD 2.1 checkpoint.
diffseg.pretrain reproduces it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from diffseg.pipeline.tokenizer import MAX_LENGTH, build_tokenizer

BUILTIN_NAMES = ("tiny", "sd21-random")
BUILTIN_SEED = 0  # torch.manual_seed before each component
# Trained built-ins shipped as diffusers directories (fp16 safetensors) inside the package.
SHIPPED = {"mini": Path(__file__).parent / "weights" / "mini"}

# stabilityai/stable-diffusion-2-1 scheduler/scheduler_config.json (a DDIM, v-prediction).
SD21_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="v_prediction",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    trained_betas=None,
    timestep_spacing="leading",
    rescale_betas_zero_snr=False,
)

_DOWN = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
_UP = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")

# stabilityai/stable-diffusion-2-1 unet/config.json (attention_head_dim is, in diffusers'
# historical naming, the number of heads per block).
SD21_UNET = dict(
    sample_size=96,
    in_channels=4,
    out_channels=4,
    down_block_types=_DOWN,
    up_block_types=_UP,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    attention_head_dim=(5, 10, 20, 20),
    cross_attention_dim=1024,
    use_linear_projection=True,
    upcast_attention=True,
    norm_num_groups=32,
    act_fn="silu",
    flip_sin_to_cos=True,
    freq_shift=0,
    center_input_sample=False,
    downsample_padding=1,
    mid_block_scale_factor=1,
    norm_eps=1e-05,
    dual_cross_attention=False,
)

TINY_UNET = {
    **SD21_UNET,
    "sample_size": 16,
    "block_out_channels": (32, 64, 64, 64),
    "attention_head_dim": (2, 4, 4, 4),
    "cross_attention_dim": 32,
}

# A small 8x VAE (4 blocks = 3 downsamplings) with SD's latent scaling.
SMALL_VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    sample_size=128,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(16, 32, 32, 32),
    layers_per_block=1,
    norm_num_groups=8,
    act_fn="silu",
    scaling_factor=0.18215,
)


def _text_config(tokenizer, hidden: int, layers: int, heads: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=MAX_LENGTH,
        hidden_act="gelu",
        projection_dim=hidden,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


_SPECS = {
    # name: (unet config, text encoder (hidden, layers, heads))
    "tiny": (TINY_UNET, (32, 2, 2)),
    "sd21-random": (SD21_UNET, (1024, 1, 16)),
}


def build_builtin(name: str, seed: int = 0) -> dict:
    """Components of a built-in model (fp32, CPU): unet, vae, text_encoder, tokenizer, scheduler."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    assert name in _SPECS, name
    unet_cfg, (hidden, layers, heads) = _SPECS[name]
    tokenizer = build_tokenizer()
    with torch.random.fork_rng(devices=[]):  # seeds the init, leaves the caller's RNG alone
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**unet_cfg)
        torch.manual_seed(seed)
        vae = AutoencoderKL(**SMALL_VAE)
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(_text_config(tokenizer, hidden, layers, heads))
    scheduler = DDIMScheduler(**SD21_SCHEDULER)
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
