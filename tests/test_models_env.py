"""`diffseg env` and the attention backend choice."""

import torch
from typer.testing import CliRunner

from diffseg.cli import app
from diffseg.pipeline.attention import SDPA, configure_attention, xformers_status


def test_env_prints_versions_and_backend():
    result = CliRunner().invoke(app, ["env"])
    assert result.exit_code == 0, result.output
    assert f"torch: {torch.__version__}" in result.output
    assert "attention backend: " in result.output
    if not torch.cuda.is_available():
        assert "cuda: none" in result.output
        assert "attention backend: sdpa (no CUDA: xformers unavailable, PyTorch SDPA in use)" in result.output


def test_cpu_uses_sdpa_everywhere():
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    from diffseg.pipeline.builtin import TINY_UNET

    unet = UNet2DConditionModel(**TINY_UNET)
    unet.set_attn_processor(AttnProcessor())
    assert configure_attention(unet, "cpu") == SDPA
    assert {type(p) for p in unet.attn_processors.values()} == {AttnProcessor2_0}
    assert xformers_status("cpu") == (False, "no CUDA: xformers unavailable, PyTorch SDPA in use")
