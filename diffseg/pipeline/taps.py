"""Feature taps on the U-Net up path (docs/design/method.md §3), as a context manager.

- res:   forward hook on up_blocks[i].resnets[j].conv2 (residual branch, before the skip add)
- blk:   forward hook on up_blocks[i].attentions[j].transformer_blocks[0]; tokens [B, hw, C]
         reshaped to [B, C, h, w]
- xattn: a capture processor swapped onto that block's attn2 only (after SDPA/xformers were
         configured, so every other layer keeps the fast path); it computes softmax(Q K^T * scale)
         with attn.get_attention_scores (which upcasts, as SD 2.1 needs) and keeps the mean over
         heads, [B, T, h, w]. Per-class reduction happens in the extractor.
Buffers are cleared by every read().
"""

from __future__ import annotations

import torch

from diffseg.core.errors import DiffsegError
from diffseg.core.layers import parse_layer


class XattnCaptureProcessor:
    """Plain attention that also records the head-averaged attention probabilities [B, N, T]."""

    def __init__(self):
        self.probs_BNT: torch.Tensor | None = None

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        assert attn.spatial_norm is None and attn.group_norm is None
        assert hidden_states.ndim == 3, "transformer blocks feed tokens [B, N, C]"
        residual = hidden_states
        B, N, _ = hidden_states.shape
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        attention_mask = attn.prepare_attention_mask(attention_mask, context.shape[1], B)

        q = attn.head_to_batch_dim(attn.to_q(hidden_states))  # [B*heads, N, d]
        k = attn.head_to_batch_dim(attn.to_k(context))  # [B*heads, T, d]
        v = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(q, k, attention_mask)  # [B*heads, N, T], batch-major
        self.probs_BNT = probs.float().view(B, attn.heads, N, -1).mean(1)
        out = attn.batch_to_head_dim(torch.bmm(self.mix(probs), v))
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def mix(self, probs: torch.Tensor) -> torch.Tensor:
        """The weights the values are mixed with, from the probabilities [B*heads, N, T]: these
        themselves (a subclass may change them, e.g. experiments/bench_caption_use.py)."""
        return probs


class FeatureTaps:
    """with FeatureTaps(unet, layers) as taps: unet(...); feats = taps.read()
    -> {layer: res/blk [B, C, h, w], xattn [B, T, h, w] (head-mean attention probabilities)}."""

    def __init__(self, unet, layers):
        self.unet, self.layers = unet, tuple(layers)
        self._handles: list = []
        self._saved_procs: list = []  # (attn module, original processor)
        self._buf: dict[str, torch.Tensor] = {}
        self._hw: dict[tuple[int, int], tuple[int, int]] = {}  # transformer input size per (i, j)
        self._procs: dict[str, XattnCaptureProcessor] = {}

    # -- module lookup -------------------------------------------------------------------
    def _block(self, i):
        if i >= len(self.unet.up_blocks):
            raise DiffsegError(f"U-Net has {len(self.unet.up_blocks)} up blocks, no up{i}")
        return self.unet.up_blocks[i]

    def _resnet(self, i, j):
        blk = self._block(i)
        if j >= len(blk.resnets):
            raise DiffsegError(f"up_blocks[{i}] has {len(blk.resnets)} resnets, no res{j}")
        return blk.resnets[j]

    def _transformer(self, i, j, name):
        atts = getattr(self._block(i), "attentions", None)
        if not atts or j >= len(atts):
            raise DiffsegError(f"layer {name}: up_blocks[{i}] has no attention block {j}")
        return atts[j]

    # -- install / remove ------------------------------------------------------------------
    def __enter__(self):
        try:
            for name in self.layers:
                i, kind, j = parse_layer(name)
                if kind == "res":
                    self._hook(self._resnet(i, j).conv2, name)
                    continue
                tr = self._transformer(i, j, name)
                if (i, j) not in self._hw:
                    self._handles.append(tr.register_forward_pre_hook(self._size_hook((i, j)), with_kwargs=True))
                    self._hw[(i, j)] = None
                if kind == "blk":
                    self._hook(tr.transformer_blocks[0], name)
                else:
                    attn2 = tr.transformer_blocks[0].attn2
                    proc = XattnCaptureProcessor()
                    self._saved_procs.append((attn2, attn2.processor))
                    attn2.set_processor(proc)
                    self._procs[name] = proc
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        for attn, proc in reversed(self._saved_procs):
            attn.set_processor(proc)
        self._handles, self._saved_procs, self._procs = [], [], {}
        self._buf.clear()
        return False

    def _hook(self, module, name):
        def hook(_mod, _inp, out):
            self._buf[name] = out

        self._handles.append(module.register_forward_hook(hook))

    def _size_hook(self, key):
        def hook(_mod, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            self._hw[key] = tuple(x.shape[-2:])

        return hook

    # -- read --------------------------------------------------------------------------------
    def read(self) -> dict[str, torch.Tensor]:
        """Features of the last U-Net call; clears the buffers."""
        out = {}
        for name in self.layers:
            i, kind, j = parse_layer(name)
            if kind == "res":
                out[name] = self._buf.pop(name)
                continue
            h, w = self._hw[(i, j)]
            if kind == "blk":
                tok_BNC = self._buf.pop(name)
                out[name] = tok_BNC.transpose(1, 2).reshape(tok_BNC.shape[0], -1, h, w)
            else:
                proc = self._procs[name]
                p_BNT, proc.probs_BNT = proc.probs_BNT, None
                assert p_BNT is not None, f"no attention captured for {name}: read() before a U-Net call"
                out[name] = p_BNT.transpose(1, 2).reshape(p_BNT.shape[0], -1, h, w)
        return out


def class_maps(probs_BTHW: torch.Tensor, selections) -> torch.Tensor:
    """Per output channel, the mean over one copy's class-name tokens.
    selections: list of (copy index b, token positions) or None (class absent: zeros)
    -> [len(selections), h, w]."""
    B, T, h, w = probs_BTHW.shape
    maps = []
    for sel in selections:
        if sel is None:
            maps.append(probs_BTHW.new_zeros(h, w))
        else:
            b, pos = sel
            maps.append(probs_BTHW[b, list(pos)].mean(0))
    return torch.stack(maps) if maps else probs_BTHW.new_zeros(0, h, w)
