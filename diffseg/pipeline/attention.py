"""Attention backend of the frozen U-Net: xformers where its kernels run, else PyTorch SDPA.

docs/design/architecture.md (Models): on CUDA, self-attention uses xformers when its kernels actually run
(checked with a tiny `memory_efficient_attention` call, not just the import); everywhere
else `AttnProcessor2_0` (torch's scaled_dot_product_attention). Call `configure_attention`
before installing capture processors: `enable_xformers_memory_efficient_attention()`
replaces every processor, custom ones included.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # from its module: mypy reads `diffusers.UNet2DConditionModel` as the no-torch dummy
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

XFORMERS, SDPA = "xformers", "sdpa"


@functools.cache
def _xformers_check(device: str) -> tuple[bool, str]:
    dev = torch.device(device)
    if dev.type != "cuda":
        return False, "no CUDA: xformers unavailable, PyTorch SDPA in use"
    try:
        import xformers.ops
    except ImportError as err:
        return False, f"xformers not installed ({err}), PyTorch SDPA in use"
    q_BMHK = torch.randn(1, 16, 2, 64, device=dev, dtype=torch.float16)
    try:
        out = xformers.ops.memory_efficient_attention(q_BMHK, q_BMHK, q_BMHK)
        torch.cuda.synchronize(dev)
    except (RuntimeError, NotImplementedError, ValueError) as err:
        # NotImplementedError: no kernel for this GPU/dtype; RuntimeError: a kernel that fails to launch.
        why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return (
            False,
            f"xformers {xformers.__version__} kernels do not run on {torch.cuda.get_device_name(dev)}: {why}; PyTorch SDPA in use",
        )
    assert out.shape == q_BMHK.shape
    return True, f"xformers {xformers.__version__} kernels run on {torch.cuda.get_device_name(dev)}"


def xformers_status(device: str | torch.device) -> tuple[bool, str]:
    """(usable, one-line reason) for xformers on `device`; the kernel test runs once per device."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return _xformers_check(str(dev))


def configure_attention(unet: UNet2DConditionModel, device: str | torch.device) -> str:
    """Install xformers or SDPA processors on every attention of `unet`; return the backend name."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    usable, _ = xformers_status(device)
    if usable:
        unet.enable_xformers_memory_efficient_attention()
        return XFORMERS
    unet.set_attn_processor(AttnProcessor2_0())
    return SDPA
